"""``evaluate()``: a trained model and its base on local evaluation sets, at every Matryoshka dim.

For each model (``trained``, then ``base``), each set and each dim, one ``mteb.evaluate`` call runs mteb's
task class on the local data (:mod:`.tasks`) through a :class:`~.encoder.MatryoshkaEncoder`, which encodes
each text once and truncates for the smaller dims. Outputs in ``out_dir``::

    mteb/results/<model>/<revision>/  mteb's own result layout: <task>.json + model_meta.json; smaller dims
                                      and other input formats as mteb experiments (:mod:`.mteb_results`;
                                      load with ``load_mteb_results`` or ``mteb.ResultCache(OUT/mteb)``)
    results.json                      one record per (task, model, dim): main score + scalar metrics
    summary.json                      {task: {label: {dim: main score}}}
    results.md                        the base-vs-trained table
    manifest.json                     written last: config, models, sets, timings
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gecko_distill.artifacts import atomic_write_text
from gecko_distill.corpus.eval_sets import EvalSet, load_eval_set
from gecko_distill.embedding.formats import native_mode
from gecko_distill.embedding.task_strings import task_string_for
from gecko_distill.evaluation.config import EvaluationConfig
from gecko_distill.evaluation.encoder import MatryoshkaEncoder, resolve_dims
from gecko_distill.evaluation.formatting import InputFormat, PromptMode
from gecko_distill.evaluation.mteb_results import MTEB_TYPES, check_official_task, save_mteb_result
from gecko_distill.evaluation.tasks import MAIN_SCORES, build_task_factory
from gecko_distill.training.model_card import record_evaluation

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["DataSpec", "EvaluationResult", "ScoreRecord", "evaluate", "load_sets", "markdown_table"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSpec:
    """One evaluation set to run: a folder, its kind (``auto`` detects it), split and result name."""

    path: str
    kind: str = "auto"
    split: str | None = None
    name: str | None = None

    @classmethod
    def parse(cls, spec: str) -> DataSpec:
        """``PATH``, ``PATH:SPLIT`` (e.g. ``../shared/benchdata/nfcorpus:dev``) or ``NAME=PATH[:SPLIT]``: the
        set's result name, e.g. an official mteb task name (``STSBenchmark=../shared/benchdata/stsb``)."""
        head, sep, rest = spec.partition("=")
        if sep and head and "/" not in head and not Path(spec).exists():
            inner = cls.parse(rest)
            return cls(path=inner.path, kind=inner.kind, split=inner.split, name=head)
        if ":" in spec and not Path(spec).exists():
            path, split = spec.rsplit(":", 1)
            if split and "/" not in split:
                return cls(path=path, split=split)
        return cls(path=spec)


@dataclass(frozen=True)
class ScoreRecord:
    """One (task, model, dim) result."""

    task: str
    kind: str
    split: str
    model: str  # label: "trained" or "base"
    model_name: str
    dim: int
    main_score_name: str
    main_score: float
    metrics: dict[str, float]
    n_items: int
    notes: tuple[str, ...]
    seconds: float


@dataclass
class EvaluationResult:
    """All records of a run, the summary mapping and where the files went."""

    records: list[ScoreRecord]
    models: dict[str, dict[str, Any]]
    sets: list[dict[str, Any]]
    out_dir: Path | None = None
    elapsed_s: float = 0.0
    summary: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def score(self, task: str, model: str = "trained", dim: int | None = None) -> float:
        """The main score of ``task`` for a model label at ``dim`` (default: its largest dim)."""
        rows = [
            r for r in self.records if r.task == task and r.model == model and (dim is None or r.dim == dim)
        ]
        if not rows:
            raise KeyError(f"no result for task={task!r} model={model!r} dim={dim}")
        return max(rows, key=lambda r: r.dim).main_score


def load_sets(data: Sequence[str | Path | DataSpec], config: EvaluationConfig) -> list[EvalSet]:
    """Read every set once (shared by both models), with unique names."""
    sets: list[EvalSet] = []
    for item in data:
        spec = item if isinstance(item, DataSpec) else DataSpec(str(item))
        s = load_eval_set(
            spec.path,
            kind=spec.kind,
            split=spec.split,
            name=spec.name,
            limit=config.limit,
            max_corpus=config.max_corpus,
            seed=config.seed,
        )
        if spec.name is not None:
            check_official_task(spec.name, s.kind)
        if s.kind == "clustering" and spec.name is None:
            s.name = f"{s.name}-clustering"
        if any(o.name == s.name for o in sets):
            s.name = f"{s.name}-{s.kind}"
        sets.append(s)
    return sets


def _prompt_mode(requested: str, model_path: str) -> PromptMode:
    """The input format a model is evaluated in: ``requested``, or for 'auto' the format it was trained with
    (MTEB's protocol: a model without gecko-distill prompts reads raw text)."""
    if requested != "auto":
        return requested  # type: ignore[return-value]
    return native_mode(model_path if Path(model_path).is_dir() else None)


def _scalar_metrics(scores: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in scores.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not k.startswith("nauc")
    }


def markdown_table(summary: dict[str, dict[str, dict[str, float]]]) -> str:
    """``| task | dim | base | trained | Δ |`` rows, scores ×100 as MTEB reports them."""
    lines = ["| task | dim | base | trained | Δ |", "|---|---|---|---|---|"]
    for task, by_model in summary.items():
        dims = sorted({int(d) for m in by_model.values() for d in m}, reverse=True)
        for d in dims:
            b = by_model.get("base", {}).get(str(d))
            t = by_model.get("trained", {}).get(str(d))
            delta = f"{100 * (t - b):+.2f}" if b is not None and t is not None else ""
            lines.append(
                f"| {task} | {d} | {'' if b is None else f'{100 * b:.2f}'} | "
                f"{'' if t is None else f'{100 * t:.2f}'} | {delta} |"
            )
    return "\n".join(lines) + "\n"


def evaluate(
    model: str,
    data: Sequence[str | Path | DataSpec],
    *,
    out_dir: str | Path | None = None,
    config: EvaluationConfig | None = None,
) -> EvaluationResult:
    """Evaluate ``model`` (and ``config.base`` beside it) on local sets at every Matryoshka dim.

    Args:
        model: A sentence-transformers model: packaged alias, local folder or hub name.
        data: Evaluation folders (kind auto-detected) or :class:`DataSpec` items.
        out_dir: Where results go (see the module docstring); ``None`` keeps them in memory only.
        config: Dims, formats, limits, caching; defaults to :class:`EvaluationConfig`.

    Returns:
        The records, the ``{task: {label: {dim: score}}}`` summary and model/set descriptions.
    """
    from gecko_distill.embedding import load_embedder, resolve_embedder_path
    from gecko_distill.evaluation.store import EmbeddingStore, model_fingerprint

    cfg = config or EvaluationConfig()
    t_start = time.time()
    sets = load_sets(data, cfg)
    mode = _prompt_mode(cfg.prompts, resolve_embedder_path(model))
    if cfg.base is None or cfg.base_prompts == "same":
        base_mode = mode
    else:
        base_mode = _prompt_mode(cfg.base_prompts, resolve_embedder_path(cfg.base))
    modes = {"trained": mode, "base": base_mode}
    logger.info("input formats: trained model %s, base %s", mode, base_mode)
    formats: dict[tuple[str, str], InputFormat] = {}
    factories: dict[tuple[str, str], Any] = {}
    for s in sets:
        for m in dict.fromkeys(modes.values()):
            formats[(s.name, m)] = InputFormat.for_set(
                s.name, s.kind, mode=m, task=task_string_for(s.name, s.kind, cfg.task_strings)
            )
            factories[(s.name, m)] = build_task_factory(
                s, formats[(s.name, m)], seed=cfg.seed, k_values=cfg.k_values, language=cfg.language
            )
    out = Path(out_dir) if out_dir is not None else None

    models = [("trained", model)] + ([("base", cfg.base)] if cfg.base else [])
    records: list[ScoreRecord] = []
    model_info: dict[str, dict[str, Any]] = {}
    dims: list[int] | None = None
    encoders: dict[str, MatryoshkaEncoder] = {}
    for label, name in models:
        path = resolve_embedder_path(name)
        if path in encoders:  # the base is the model itself: reuse its embeddings
            encoder = encoders[path]
        else:
            st = load_embedder(name, max_seq_length=cfg.max_seq_length)
            fp = model_fingerprint(path, max_seq_length=st.max_seq_length)
            store = EmbeddingStore(Path(cfg.cache_dir) / fp) if (cfg.cache_dir and fp) else None
            encoder = MatryoshkaEncoder(
                st,
                name=name,
                revision=fp,
                batch_size=cfg.batch_size,
                batch_tokens=cfg.batch_tokens,
                store=store,
                show_progress=cfg.show_progress,
            )
            encoders = {path: encoder}  # keep one model in memory at a time
        if dims is None:  # the trained model decides the dims; the base is evaluated at the same ones
            dims = resolve_dims(path, encoder.full_dim, cfg.dims)
        model_dims = [d for d in dims if d <= encoder.full_dim]
        model_info[label] = {
            "name": name,
            "path": path,
            "fingerprint": encoder.mteb_model_meta.revision,
            "full_dim": encoder.full_dim,
            "dims": model_dims,
            "prompts": modes[label],
            "max_seq_length": encoder.model.max_seq_length,
        }
        from tqdm.auto import tqdm

        bar = tqdm(total=len(sets) * len(model_dims), desc=f"evaluate {label}", unit="task",
                   disable=not cfg.show_progress)
        for s in sets:
            t_set = time.time()
            bar.set_postfix_str(s.name)
            logger.info(
                "evaluating %s (%s) on %s [%s, %d items] at dims %s",
                label,
                name,
                s.name,
                s.kind,
                s.size,
                model_dims,
            )
            for d in model_dims:
                records.append(
                    _run_one(encoder, factories[(s.name, modes[label])], s, label, name, d, cfg, out,
                             formats=(modes[label], _prompt_mode("auto", path)))
                )
                bar.update()
            model_info[label].setdefault("seconds", {})[s.name] = round(time.time() - t_set, 2)
        bar.close()
        model_info[label]["encoded_texts"] = encoder.encoded_texts

    summary: dict[str, dict[str, dict[str, float]]] = {}
    for r in records:
        summary.setdefault(r.task, {}).setdefault(r.model, {})[str(r.dim)] = round(r.main_score, 6)
    set_info = [
        {
            "name": s.name,
            "kind": s.kind,
            "path": str(s.path),
            "split": s.split,
            "items": s.size,
            "main_score": MAIN_SCORES[s.kind],
            "notes": s.notes,
            "format": {label: formats[(s.name, modes[label])].describe() for label, _ in models},
        }
        for s in sets
    ]
    res = EvaluationResult(
        records=records,
        models=model_info,
        sets=set_info,
        out_dir=out,
        elapsed_s=round(time.time() - t_start, 2),
        summary=summary,
    )
    if out is not None:
        _write_outputs(out, res, cfg)
    return res


def _run_one(
    encoder: MatryoshkaEncoder,
    make_task: Any,
    s: EvalSet,
    label: str,
    name: str,
    dim: int,
    cfg: EvaluationConfig,
    out: Path | None,
    *,
    formats: tuple[str, str] = ("none", "none"),
) -> ScoreRecord:
    """One ``mteb.evaluate`` call: set ``s`` for one model at one dim; writes the mteb TaskResult file."""
    import mteb
    from sklearn.exceptions import ConvergenceWarning, UndefinedMetricWarning

    t0 = time.time()
    encoder.dim = dim
    with warnings.catch_warnings():
        # MTEB's protocol fixes max_iter=100 for the logistic regression, and small subsets leave some labels
        # unpredicted: both warn on every experiment, telling the user nothing.
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        warnings.filterwarnings("ignore", category=UndefinedMetricWarning)
        result = mteb.evaluate(
            encoder,
            make_task(),
            cache=None,
            overwrite_strategy="always",
            co2_tracker=False,
            show_progress_bar=False,
            raise_error=True,
            encode_kwargs={"batch_size": cfg.batch_size, "show_progress_bar": False},
        )
    task_result = result.task_results[0]
    scores = task_result.scores[s.split][0]
    rec = ScoreRecord(
        task=s.name,
        kind=s.kind,
        split=s.split,
        model=label,
        model_name=name,
        dim=dim,
        main_score_name=MAIN_SCORES[s.kind],
        main_score=float(scores["main_score"]),
        metrics=_scalar_metrics(scores),
        n_items=s.size,
        notes=tuple(s.notes),
        seconds=round(time.time() - t0, 2),
    )
    logger.info(
        "  %s %s dim %d: %s = %.4f (%.1fs)",
        label,
        s.name,
        dim,
        rec.main_score_name,
        rec.main_score,
        rec.seconds,
    )
    if out is not None:  # mteb's result-cache layout (``formats``: the one used, the model's own)
        save_mteb_result(out, task_result, encoder.mteb_model_meta, model=name, dim=dim,
                         full_dim=encoder.full_dim, input_format=formats[0], native_format=formats[1],
                         encode_kwargs={"batch_size": cfg.batch_size})
    return rec


def _write_outputs(out: Path, res: EvaluationResult, cfg: EvaluationConfig) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.json", json.dumps([asdict(r) for r in res.records], indent=2))
    atomic_write_text(out / "summary.json", json.dumps(res.summary, indent=2))
    notes = sorted({n for s in res.sets for n in s["notes"]})
    fmts = "; ".join(f"{label} ({m['name']}): {m['prompts']}" for label, m in res.models.items())
    splits = ", ".join(f"{s['name']}: {s['split']}" for s in res.sets)
    md = ("# Evaluation\n\nMain scores ×100 (MTEB main score per task kind). Each model in its input format "
          f"({fmts}; 'none' = raw text). Splits: {splits}.\n\n" + markdown_table(res.summary))
    if notes:
        md += "\nSubsets (not comparable with published MTEB numbers):\n" + "".join(f"- {n}\n" for n in notes)
    atomic_write_text(out / "results.md", md)
    from gecko_distill import __version__

    manifest = {
        "stage": "evaluation",
        "gecko_distill_version": __version__,
        "config": cfg.model_dump(),
        "models": res.models,
        "sets": res.sets,
        "elapsed_s": res.elapsed_s,
        "files": ["results.json", "summary.json", "results.md", "mteb/"],
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2, default=str))
    card = record_evaluation(res.models["trained"]["path"], {
        "summary": res.summary, "table_md": markdown_table(res.summary), "mteb_types": MTEB_TYPES,
        "models": res.models, "sets": res.sets, "results_dir": str(out), "finished_at": manifest["finished_at"]})
    if card is not None:
        logger.info("evaluation recorded in the model card %s", card)
