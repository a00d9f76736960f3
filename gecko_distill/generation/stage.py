"""Stage 1 (Gecko §3.2, step 1): seed passages → LLM-written (task, query).

Each seed passage gets a task type (uniform over the configured types); the LLM continues a few-shot
prompt with a one-sentence task description and a query. Output is parsed strictly; rejects are kept
(``generation.rejects.jsonl``) and counted by reason.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gecko_distill._stage import LLMShardWork, ShardRunner, run_shards
from gecko_distill.artifacts import StageDir, fingerprint, to_jsonl
from gecko_distill.corpus.normalize import truncate_words
from gecko_distill.errors import InputError, ParseError
from gecko_distill.generation.parsing import REJECT_REASONS, parse_task_query
from gecko_distill.generation.sampling import assign_task_types, sample_seeds
from gecko_distill.llm.base import GenerationParams, LLMBackend
from gecko_distill.prompts import PromptSet, prompts_for
from gecko_distill.records import Passage, TaskQuery
from gecko_distill.stage_configs import GenerationConfig

__all__ = ["GenerationResult", "generate", "load_task_queries"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationResult:
    """The accepted (task, query) rows and the stage summary."""

    queries: list[TaskQuery]
    summary: dict[str, Any]
    path: Path


@dataclass(frozen=True)
class _GenerateCall:
    """The stage's LLM call on one shard's prompts (picklable, so a remote worker can run it)."""

    prefix: str
    params: GenerationParams

    def __call__(self, llm: LLMBackend, prompts: list[str]) -> list[str]:
        return llm.generate(prompts, prefix=self.prefix, params=self.params)


def _shard_size(config: GenerationConfig) -> int:
    """Prompts per shard (and per backend call): ``batch_size`` rounded up to a multiple of
    ``queries_per_passage``, so a passage's prompts share a call and the backend decodes the passage once."""
    q = config.queries_per_passage
    return -(-config.batch_size // q) * q


def _fingerprint(passages: Sequence[Passage], llm: LLMBackend, config: GenerationConfig, prompts: PromptSet) -> str:
    payload = {
        "stage": "generation",
        "corpus": fingerprint([(p.id, p.title, p.text) for p in passages]),
        "llm": llm.fingerprint,
        "config": config.fingerprint_dump(),
        "prompts": [prompts.version, prompts.generation_prefix, prompts.generation_item],
    }
    if _shard_size(config) != config.batch_size:
        # the shard plan differs from the one older versions used for this config: never resume their shards
        payload["shard_size"] = _shard_size(config)
    return fingerprint(payload)


def generate(
    passages: Sequence[Passage],
    llm: LLMBackend,
    config: GenerationConfig,
    *,
    out_dir: str | Path,
    prompts: PromptSet | None = None,
    progress: bool = True,
    shard_runner: ShardRunner | None = None,
) -> GenerationResult:
    """Write ``out_dir/generation.jsonl`` (+ Parquet, manifest) and return the accepted rows.

    ``shard_runner`` runs the LLM calls elsewhere (e.g. a Ray actor pool, see ``gecko_distill.executors``);
    the default runs them here. Either way the shard plan and the rows are the same.
    """
    prompts = prompts or prompts_for(llm, config.prompts)
    stage = StageDir(Path(out_dir), "generation")
    fp = _fingerprint(passages, llm, config, prompts)
    if stage.is_complete(fp):
        logger.info("generation: %s is complete, skipping", stage.path)
        return load_task_queries(stage.path)
    started = time.time()
    stage.prepare(fp)
    seeds = sample_seeds(passages, config.num_passages, seed=config.seed)
    types = assign_task_types(len(seeds), config.task_types, seed=config.seed)
    # Several queries per passage: copy j of a passage takes the task type j places after its first one, so
    # one passage's queries have distinct types (distinct prompts: greedy decoding writes distinct queries)
    # and every type keeps its uniform share. Passage-major order: a passage's queries sit together, and
    # in one shard (_shard_size), so the backend decodes the passage once for all of them.
    order = list(config.task_types)
    items = [(p, order[(order.index(tt) + j) % len(order)]) for p, tt in zip(seeds, types, strict=True)
             for j in range(config.queries_per_passage)]
    params = GenerationParams(max_tokens=config.max_new_tokens, temperature=config.temperature,
                              stop=("\n\n", "\nPassage:", "\nTask type:"), seed=config.seed)

    def request(batch: Sequence[tuple[Passage, str]], start: int) -> list[str]:
        return [prompts.generation_prompt(truncate_words(p.text, config.max_passage_words), tt) for p, tt in batch]

    def finish(batch: Sequence[tuple[Passage, str]], start: int, outs: list[str]) -> list[dict[str, Any]]:
        texts = [truncate_words(p.text, config.max_passage_words) for p, _ in batch]
        rows = []
        for (p, tt), text, out in zip(batch, texts, outs, strict=True):
            row: dict[str, Any] = {"passage_id": p.id, "task_type": tt, "raw": out}
            try:
                row["task"], row["query"] = parse_task_query(out, text, max_query_words=config.max_query_words,
                                                             filter_generic=config.filter_generic,
                                                             max_passage_overlap=config.max_passage_overlap)
                row["reject"] = None
            except ParseError as e:
                row["task"], row["query"], row["reject"] = None, None, e.reason
            rows.append(row)
        return rows

    work = LLMShardWork(llm, request, _GenerateCall(prompts.generation_prefix, params), finish)
    n_shards = run_shards(stage, items, _shard_size(config), work, desc="generate (task, query)",
                          progress=progress, runner=shard_runner)
    rows = stage.read_shards(n_shards)
    # Duplicate queries are judged over the whole stage, in deterministic order (first one wins).
    seen: set[str] = set()
    for r in rows:
        if r["reject"] is None:
            key = r["query"].casefold()
            if key in seen:
                r["reject"] = "duplicate_query"
            seen.add(key)
    accepted = [{k: r[k] for k in ("passage_id", "task_type", "task", "query")} for r in rows if r["reject"] is None]
    rejects = [r for r in rows if r["reject"] is not None]
    counts = Counter(r["reject"] for r in rejects)
    summary = {
        "rows_in": len(rows),
        "rows_out": len(accepted),
        "rejects": {k: counts.get(k, 0) for k in REJECT_REASONS},
        "task_types": dict(Counter(r["task_type"] for r in accepted)),
        "prompt_version": prompts.version,
        "llm": llm.fingerprint,
    }
    if len(accepted) < max(1, len(rows) // 2):
        logger.warning("generation kept only %d of %d rows: check the LLM and prompts (rejects: %s)",
                       len(accepted), len(rows), dict(counts))
    stage.finalize(accepted, fp=fp, config=config.model_dump(), summary=summary, started_at=started,
                   extra_files={"generation.rejects.jsonl": to_jsonl(rejects)})
    if not accepted:
        raise InputError(f"generation produced no usable queries (rejects: {dict(counts)}); see "
                         f"{stage.path / 'generation.rejects.jsonl'}")
    return load_task_queries(stage.path)


def load_task_queries(path: str | Path) -> GenerationResult:
    """Read a finished generation stage directory."""
    stage = StageDir(Path(path), "generation")
    manifest = stage.require_complete()
    queries = [TaskQuery(r["passage_id"], r["task_type"], r["task"], r["query"]) for r in stage.rows()]
    return GenerationResult(queries=queries, summary=manifest["summary"], path=stage.path)
