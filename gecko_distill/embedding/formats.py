"""Gecko's unified input formats (paper App. B, Table 7).

| case                                  | query side                     | document side                  |
|---------------------------------------|--------------------------------|--------------------------------|
| asymmetric (retrieval, QA, fact check)| ``task: {task} | query: {q}``  | ``title: {title} | text: {t}`` |
| symmetric (STS, NLI, classification)  | ``task: {task} | query: {q}``  | ``task: {task} | query: {t}``  |

Passages without a title get ``title: none`` ([ours], the convention of Google's later public embedders).
``plain`` mode (the paper's format ablation) concatenates task and text with a space, title and text likewise.
"""

from __future__ import annotations

__all__ = [
    "SYMMETRIC_TASK_TYPES",
    "document_prompt",
    "format_document",
    "format_query",
    "query_prompt",
]

#: Task types whose both sides use the query format (Gecko §2): similarity-style tasks.
SYMMETRIC_TASK_TYPES = frozenset({"sentence_similarity", "classification", "clustering", "nli",
                                  "pair_classification", "semantic_similarity"})


def query_prompt(task: str, *, unified: bool = True) -> str:
    """The prefix placed before a query's text (a sentence-transformers *prompt*)."""
    return f"task: {task} | query: " if unified else (f"{task} " if task else "")


def document_prompt(title: str | None = None, *, unified: bool = True) -> str:
    """The prefix placed before a document's text."""
    t = (title or "").strip()
    if unified:
        return f"title: {t or 'none'} | text: "
    return f"{t} " if t else ""


def format_query(task: str, query: str, *, unified: bool = True) -> str:
    return query_prompt(task, unified=unified) + query


def format_document(text: str, title: str | None = None, *, task: str | None = None,
                    symmetric: bool = False, unified: bool = True) -> str:
    """Format a document; symmetric tasks format it like a query with the same task."""
    if symmetric:
        if task is None:
            raise ValueError("a symmetric document needs the task string")
        return format_query(task, text, unified=unified)
    return document_prompt(title, unified=unified) + text
