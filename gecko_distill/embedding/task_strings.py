"""The task strings of Gecko's unified query format for evaluation sets (Gecko Table 9).

``task: {task} | query: {q}``: the ``{task}`` per kind of set, per named retrieval set, and the retrieval
sets whose documents are encoded like queries. Used wherever a labelled set is encoded: evaluation, the
labeller checks, and ``fusion = "auto"`` on a labelled sample.
"""

from __future__ import annotations

__all__ = ["DEFAULT_TASK_STRINGS", "PAPER_TASK_STRINGS", "SYMMETRIC_RETRIEVAL_SETS", "task_string_for"]

#: Default task string per kind, from Table 9: STS and pair classification use "semantic similarity",
#: classification "classification", clustering "search result" (both sides in the query format), and
#: retrieval sets not listed below "search result".
DEFAULT_TASK_STRINGS: dict[str, str] = {
    "retrieval": "search result",
    "sts": "semantic similarity",
    "pair_classification": "semantic similarity",
    "classification": "classification",
    "clustering": "search result",
}

#: Table 9's per-dataset strings for retrieval sets (keys: lower-cased folder / task names).
PAPER_TASK_STRINGS: dict[str, str] = {
    **dict.fromkeys(("scifact", "nfcorpus"), "fact checking"),
    **dict.fromkeys(("arguana",), "semantic similarity"),
    **dict.fromkeys(
        (
            "cqadupstack",
            "dbpedia",
            "dbpedia-entity",
            "fiqa",
            "fiqa2018",
            "msmarco",
            "nq",
            "scidocs",
            "touche2020",
            "webis-touche2020",
        ),
        "question answering",
    ),
    **dict.fromkeys(
        ("climate-fever", "climatefever", "fever", "hotpotqa", "trec-covid", "treccovid", "quora"),
        "search result",
    ),
}

#: Retrieval sets whose documents are encoded like queries (Table 9's ✓ for QuoraRetrieval).
SYMMETRIC_RETRIEVAL_SETS = frozenset({"quora", "quoraretrieval"})


def task_string_for(name: str, kind: str, overrides: dict[str, str] | None = None) -> str:
    """The ``{task}`` inserted in ``task: {task} | query: ...`` for an evaluation set."""
    key = name.lower()
    if overrides and key in overrides:
        return overrides[key]
    if kind == "retrieval" and key in PAPER_TASK_STRINGS:
        return PAPER_TASK_STRINGS[key]
    return DEFAULT_TASK_STRINGS[kind]
