"""Run the stages end to end from one :class:`~gecko_distill.config.PipelineConfig`.

Layout of a run directory (each stage folder has its own ``manifest.json``, written last)::

    OUT/generation/   LLM-written (task, query) rows + rejects
    OUT/fret/         the FRet dataset (fret.jsonl, fret.parquet)
    OUT/prefinetune/  the base pre-finetuned on the corpus's own pairs (when [prefinetune] is configured)
    OUT/model/        the trained embedder (when [training] is configured)
    OUT/eval/         evaluation results (when [evaluation] is configured; mteb's layout in eval/mteb/results,
                      and the model's card, OUT/model/README.md, records them)
    OUT/report.html, report.md   the run report (after training)
    OUT/llm-cache.sqlite   content-addressed LLM responses shared by all stages (resume never re-asks)
    OUT/run.json      per-stage wall times of the latest run

Finished stages are skipped; an interrupted stage resumes from its shards and the LLM cache.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from gecko_distill.artifacts import atomic_write_text
from gecko_distill.config import EmbedderConfig, PipelineConfig
from gecko_distill.corpus import CorpusReport, read_corpus
from gecko_distill.generation import GenerationResult, generate
from gecko_distill.llm import CachedLLM, load_llm
from gecko_distill.mining import MiningResult, mine
from gecko_distill.prompts import prompts_for

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["PipelineResult", "Timer", "embed_options", "load_seed_embedder", "run_pipeline"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Timer:
    """Wall time per named step, in order."""

    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, fn: Callable[[], T]) -> T:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


@dataclass
class PipelineResult:
    out_dir: Path
    corpus: CorpusReport
    generation: GenerationResult
    fret: MiningResult
    timings: Timer
    extra: dict[str, Any] = field(default_factory=dict)


def load_seed_embedder(config: EmbedderConfig) -> SentenceTransformer:
    """The ``[embedder]`` table's model (the retriever whose neighbours the LLM relabels)."""
    from gecko_distill.embedding import load_embedder

    return load_embedder(config.model, device=config.device, max_seq_length=config.max_seq_length,
                         trust_remote_code=config.trust_remote_code)


def embed_options(config: EmbedderConfig) -> dict[str, Any]:
    """The ``[embedder]`` table's encoding options, as :func:`~gecko_distill.mining.mine` takes them."""
    return {"embed_batch_size": config.batch_size, "embed_batch_tokens": config.batch_tokens,
            "embed_format": config.input_format}


def run_pipeline(config: PipelineConfig, *, progress: bool = True) -> PipelineResult:
    """Corpus → generation → mining (→ pre-finetuning → training → evaluation when configured)."""
    out = Path(config.out_dir)
    tcfg, ecfg = config.training, config.evaluation  # validated, with their cross-checks, when config was built
    if ecfg is not None and tcfg is not None and "base" not in ecfg.model_fields_set:
        # the base beside the trained model is the one training started from
        ecfg = ecfg.model_copy(update={"base": tcfg.base_model})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "pipeline.json", config.model_dump_json(indent=2))
    timer = Timer()
    passages, corpus_report = timer.run("corpus", lambda: read_corpus(config.corpus))
    logger.info("corpus: %d passages (%d rows read)", len(passages), corpus_report.rows_read)
    llm = timer.run("load models", lambda: CachedLLM(load_llm(config.llm), out / "llm-cache.sqlite"))
    prompts = prompts_for(llm, config.generation.prompts)
    gen = timer.run("generate", lambda: _executor(config).generate(
        passages, llm, config.generation, out_dir=out / "generation", prompts=prompts, progress=progress))
    embedder = timer.run("load models", lambda: load_seed_embedder(config.embedder))
    fret = timer.run("mine", lambda: _executor(config).mine(
        gen.queries, passages, embedder=embedder, llm=llm, config=config.mining, out_dir=out / "fret",
        prompts=prompts, progress=progress, **embed_options(config.embedder)))
    llm.close()
    result = PipelineResult(out, corpus_report, gen, fret, timer)
    if config.prefinetune is not None and tcfg is not None:
        from gecko_distill.training import prefinetune

        # the base's own pairs from the run's corpus, then training starts from that model; the evaluation's
        # base (set above) stays the model the user started with
        update: dict[str, Any] = {"base_model": tcfg.base_model, "corpus": config.corpus}
        if "input_format" not in config.prefinetune.model_fields_set:  # both stages in one format
            update["input_format"] = tcfg.input_format
        pcfg = config.prefinetune.model_copy(update=update)
        result.extra["prefinetune"] = timer.run("prefinetune", lambda: prefinetune(
            out / "prefinetune", config=pcfg, passages=passages))
        if config.prefinetune.combine == "average":  # a model soup: both start from the base, half each
            tcfg = tcfg.model_copy(update={"merge_with": str(out / "prefinetune"), "merge_base": 0.5})
        else:
            tcfg = tcfg.model_copy(update={"base_model": str(out / "prefinetune")})
    if tcfg is not None:
        from gecko_distill.training import train

        result.extra["training"] = timer.run("train", lambda: train(out / "fret", out / "model", config=tcfg))
    if ecfg is not None:
        from gecko_distill.evaluation import DataSpec, evaluate

        if ecfg.cache_dir is None:
            ecfg = ecfg.model_copy(update={"cache_dir": str(out / "eval-cache")})
        from gecko_distill.evaluation.resume import finished_evaluation

        done = finished_evaluation(out / "eval", model=str(out / "model"), config=ecfg)
        result.extra["evaluation"] = done or timer.run("evaluate", lambda: evaluate(
            str(out / "model"), [DataSpec.parse(d) for d in ecfg.data], out_dir=out / "eval", config=ecfg))
    if tcfg is not None:  # the report reads every stage folder; a data-only run keeps `gecko-distill report`
        from gecko_distill.report import build_report

        result.extra["report"] = timer.run("report", lambda: build_report(out))
    atomic_write_text(out / "run.json", json.dumps({
        "stage_seconds": {k: round(v, 2) for k, v in timer.seconds.items()},
        "total_seconds": round(timer.total, 2), "llm_cache": {"hits": llm.hits, "misses": llm.misses},
        "corpus": corpus_report.to_dict()}, indent=2, ensure_ascii=False))
    return result


class _LocalExecutor:
    """Runs the LLM stages in this process (the default)."""

    generate = staticmethod(generate)
    mine = staticmethod(mine)


def _executor(config: PipelineConfig) -> Any:
    if config.executor == "local":
        return _LocalExecutor
    from gecko_distill.executors.ray_executor import RayExecutor  # optional extra

    return RayExecutor(config)
