"""Stage 4: evaluation on real, human-labelled sets, base beside trained, at every Matryoshka dim.

>>> from gecko_distill.evaluation import evaluate, EvaluationConfig
>>> res = evaluate("runs/demo/model", ["../shared/benchdata/stsb"], out_dir="runs/eval")  # doctest: +SKIP
>>> res.summary["stsb"]["trained"]["384"]  # doctest: +SKIP

Modules: :mod:`gecko_distill.corpus.eval_sets` (local readers: BEIR, STS TSV, classification / pair JSONL), :mod:`.formatting`
(Gecko's evaluation prompts), :mod:`.tasks` (the sets as local mteb tasks), :mod:`.encoder` (one encoding pass
for all Matryoshka dims), :mod:`.store` (on-disk embedding cache), :mod:`.runner` (``evaluate``),
:mod:`gecko_distill.retrieval.metrics` (pure nDCG/recall + pytrec_eval), :mod:`.decontam` (overlap with evaluation sets).

Names are imported on first use: ``import mteb`` takes seconds, and the CLI must start fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ContaminationReport",
    "DataSpec",
    "EvalSet",
    "EvaluationConfig",
    "EvaluationResult",
    "LabelledSet",
    "PairSet",
    "RetrievalSet",
    "ScoreRecord",
    "TASK_KINDS",
    "decontaminate_passages",
    "detect_kind",
    "evaluate",
    "load_eval_set",
    "measure_overlap",
    "ndcg_at_k",
    "rank_documents",
    "recall_at_k",
    "score_run",
]

_HOME = {
    **dict.fromkeys(("EvaluationConfig",), "gecko_distill.evaluation.config"),
    **dict.fromkeys(
        ("TASK_KINDS", "EvalSet", "LabelledSet", "PairSet", "RetrievalSet", "detect_kind", "load_eval_set"),
        "gecko_distill.corpus.eval_sets",
    ),
    **dict.fromkeys(("ContaminationReport", "decontaminate_passages", "measure_overlap"),
                    "gecko_distill.evaluation.decontam"),
    **dict.fromkeys(("ndcg_at_k", "rank_documents", "recall_at_k", "score_run"), "gecko_distill.retrieval.metrics"),
    **dict.fromkeys(("DataSpec", "EvaluationResult", "ScoreRecord", "evaluate"), "gecko_distill.evaluation.runner"),
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
