"""Gecko's unified input formats (paper App. B, Table 7).

| case                                  | query side                     | document side                  |
|---------------------------------------|--------------------------------|--------------------------------|
| asymmetric (retrieval, QA, fact check)| ``task: {task} | query: {q}``  | ``title: {title} | text: {t}`` |
| symmetric (STS, NLI, classification)  | ``task: {task} | query: {q}``  | ``task: {task} | query: {t}``  |

Passages without a title get ``title: none`` ([ours], the convention of Google's later public embedders).
``plain`` mode (the paper's format ablation) concatenates task and text with a space, title and text likewise.
``none`` mode is raw text, the way MTEB feeds a model without prompts (title and text joined by a space): the
*native* format of an off-the-shelf embedder such as all-MiniLM-L6-v2, which never saw Gecko's prompts and
loses ~2 nDCG@10 on SciFact and ~10 Spearman on STS-B when fed them (docs/headline.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

__all__ = [
    "MODEL_INFO_FILE",
    "SYMMETRIC_TASK_TYPES",
    "InputMode",
    "document_prompt",
    "format_document",
    "format_query",
    "native_mode",
    "query_prompt",
    "recorded_mode",
]

InputMode = Literal["unified", "plain", "none"]

#: The file in a gecko-distill model directory that records (among other things) its input format.
MODEL_INFO_FILE = "gecko_distill.json"

#: Task types whose both sides use the query format (Gecko §2): similarity-style tasks.
SYMMETRIC_TASK_TYPES = frozenset({"sentence_similarity", "classification", "clustering", "nli",
                                  "pair_classification", "semantic_similarity"})


def _resolve(unified: bool, mode: InputMode | None) -> InputMode:
    if mode is None:
        return "unified" if unified else "plain"
    if mode not in ("unified", "plain", "none"):
        raise ValueError(f"input format must be 'unified', 'plain' or 'none', got {mode!r}")
    return mode


def query_prompt(task: str, *, unified: bool = True, mode: InputMode | None = None) -> str:
    """The prefix placed before a query's text (a sentence-transformers *prompt*)."""
    m = _resolve(unified, mode)
    if m == "none":
        return ""
    return f"task: {task} | query: " if m == "unified" else (f"{task} " if task else "")


def document_prompt(title: str | None = None, *, unified: bool = True, mode: InputMode | None = None) -> str:
    """The prefix placed before a document's text."""
    t = (title or "").strip()
    if _resolve(unified, mode) == "unified":
        return f"title: {t or 'none'} | text: "
    return f"{t} " if t else ""


def format_query(task: str, query: str, *, unified: bool = True, mode: InputMode | None = None) -> str:
    return query_prompt(task, unified=unified, mode=mode) + query


def format_document(text: str, title: str | None = None, *, task: str | None = None,
                    symmetric: bool = False, unified: bool = True, mode: InputMode | None = None) -> str:
    """Format a document; symmetric tasks format it like a query with the same task."""
    m = _resolve(unified, mode)
    if symmetric:
        if task is None:
            raise ValueError("a symmetric document needs the task string")
        if m == "none":
            return f"{(title or '').strip()} {text}".strip() if title else text
        return format_query(task, text, mode=m)
    return document_prompt(title, mode=m) + text


def native_mode(model_dir: str | Path | None) -> InputMode:
    """The input format a model was trained with: what gecko-distill recorded for its own models
    (``gecko_distill.json``), else raw text (``none``, MTEB's protocol for a model without prompts)."""
    if model_dir is None:
        return "none"
    path = Path(model_dir) / MODEL_INFO_FILE
    if not path.is_file():
        return "none"
    return recorded_mode(json.loads(path.read_text(encoding="utf-8")))


def recorded_mode(info: dict) -> InputMode:
    """The input format a parsed ``gecko_distill.json`` records; files written before ``input_format`` existed
    say only ``unified_format`` (true: unified, false: plain)."""
    mode = info.get("input_format")
    if mode in ("unified", "plain", "none"):
        return mode
    return "unified" if info.get("unified_format", True) else "plain"
