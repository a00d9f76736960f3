"""Local mteb tasks: our evaluation sets wrapped in mteb's own task classes, evaluators and protocols.

mteb's task classes (``AbsTaskRetrieval``, ``AbsTaskSTS``, ``AbsTaskClassification``,
``AbsTaskPairClassification``, ``AbsTaskClustering``) carry the MTEB protocols: exact search and pytrec_eval
metrics for retrieval, Spearman of cosine for STS, logistic regression on 8 samples per label over 10 seeded
experiments for classification, AP of cosine for pair classification, bootstrapped MiniBatchKMeans V-measure
for clustering. They normally download their data from the Hugging Face hub in ``load_data``; here the data
comes from local files already read by :mod:`gecko_distill.corpus.eval_sets`, so nothing is fetched and
``mteb.evaluate`` runs offline.

A fresh task object is built for every (model, dim) run: mteb's clustering draws its bootstrap samples from
the task's own random state, so reusing one object would give every run different samples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from datasets import Dataset, DatasetDict
from mteb.abstasks import (
    AbsTaskClassification,
    AbsTaskClustering,
    AbsTaskPairClassification,
    AbsTaskRetrieval,
    AbsTaskSTS,
)
from mteb.abstasks.task_metadata import TaskMetadata

from gecko_distill.corpus.eval_sets import EvalSet, LabelledSet, PairSet, RetrievalSet
from gecko_distill.evaluation.mteb_results import MTEB_TYPES

if TYPE_CHECKING:
    from gecko_distill.evaluation.formatting import InputFormat

__all__ = ["MAIN_SCORES", "LocalTask", "build_task_factory"]

#: MTEB's main score per kind (pair classification: mteb 2's ``max_ap``, the best AP over cosine, dot,
#: euclidean and manhattan scores).
MAIN_SCORES: dict[str, str] = {
    "retrieval": "ndcg_at_10",
    "sts": "cosine_spearman",
    "classification": "accuracy",
    "pair_classification": "max_ap",
    "clustering": "v_measure",
}

_MTEB_TYPES = MTEB_TYPES  # one mapping, shared with the result files (mteb_results.py)


def _metadata(s: EvalSet, fmt: InputFormat, language: str) -> TaskMetadata:
    notes = "; ".join(s.notes) or "full split"
    return TaskMetadata(
        name=s.name,
        description=f"Local {s.kind} set read from {s.path} (split {s.split}; {notes}). "
        f"Input format: {fmt.describe()}.",
        dataset={"path": str(s.path), "revision": "local"},
        type=_MTEB_TYPES[s.kind],
        category="t2t",
        modalities=["text"],
        eval_splits=[s.split],
        eval_langs=[language],
        main_score=MAIN_SCORES[s.kind],
    )


class LocalTask:
    """Marker mixin: a task whose data is injected, never loaded from the hub."""

    dataset: Any
    data_loaded: bool

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:  # noqa: ARG002
        if not self.data_loaded:  # pragma: no cover - the factory always injects the data
            raise RuntimeError("local tasks get their data from build_task_factory()")


def _retrieval_data(s: RetrievalSet, fmt: InputFormat) -> dict[str, Any]:
    corpus = Dataset.from_dict(
        {
            "id": [d for d, _, _ in s.corpus],
            "text": [fmt.document(text, title) for _, title, text in s.corpus],
        }
    )
    queries = Dataset.from_dict(
        {"id": [q for q, _ in s.queries], "text": [fmt.query(t) for _, t in s.queries]}
    )
    split = {"corpus": corpus, "queries": queries, "relevant_docs": s.qrels, "top_ranked": None}
    return {"default": {s.split: split}}


def build_task_factory(
    s: EvalSet,
    fmt: InputFormat,
    *,
    seed: int = 42,
    k_values: list[int] | None = None,
    language: str = "und-Zyyy",
) -> Any:
    """A zero-argument callable returning a fresh mteb task over ``s`` formatted with ``fmt``.

    The formatted datasets are built once and shared by every task the factory returns.
    """
    meta = _metadata(s, fmt, language)
    attrs: dict[str, Any] = {"metadata": meta}
    base: type
    if isinstance(s, RetrievalSet):
        base = AbsTaskRetrieval
        data: Any = _retrieval_data(s, fmt)
        if k_values:
            attrs["k_values"] = tuple(sorted(set(k_values)))
    elif isinstance(s, PairSet) and s.kind == "sts":
        base = AbsTaskSTS
        data = DatasetDict(
            {
                s.split: Dataset.from_dict(
                    {
                        "sentence1": [fmt.query(a) for a, _ in s.pairs],
                        "sentence2": [fmt.query(b) for _, b in s.pairs],
                        "score": s.gold,
                    }
                )
            }
        )
        attrs["min_score"], attrs["max_score"] = min(s.gold), max(s.gold)
    elif isinstance(s, PairSet):
        base = AbsTaskPairClassification
        data = DatasetDict(
            {
                s.split: Dataset.from_dict(
                    {
                        "sentence1": [fmt.query(a) for a, _ in s.pairs],
                        "sentence2": [fmt.query(b) for _, b in s.pairs],
                        "labels": [int(g) for g in s.gold],
                    }
                )
            }
        )
    elif isinstance(s, LabelledSet) and s.kind == "classification":
        base = AbsTaskClassification
        data = DatasetDict(
            {
                "train": Dataset.from_dict(
                    {"text": [fmt.query(t) for t in s.train_texts], "label": s.train_labels}
                ),
                s.split: Dataset.from_dict({"text": [fmt.query(t) for t in s.texts], "label": s.labels}),
            }
        )
    else:
        assert isinstance(s, LabelledSet)
        base = AbsTaskClustering
        data = DatasetDict(
            {s.split: Dataset.from_dict({"sentences": [fmt.query(t) for t in s.texts], "labels": s.labels})}
        )
        # Embed every text (no 4% subsample) and bootstrap samples as large as the set, 10 times.
        attrs["max_fraction_of_documents_to_embed"] = None
        attrs["max_document_to_embed"] = None
        attrs["max_documents_per_cluster"] = min(len(s.texts), 16_384)

    cls = type(f"Local{base.__name__.removeprefix('AbsTask')}Task", (LocalTask, base), attrs)

    def make() -> Any:
        task = cls(seed=seed)
        task.dataset = data
        task.data_loaded = True
        return task

    return make
