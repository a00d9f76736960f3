"""What the model reads at evaluation: each set's texts in Gecko's unified format (paper §2, Table 9).

=================  ===============================  ===============================
kind               first side                       second side
=================  ===============================  ===============================
retrieval          ``task: {t} | query: {q}``       ``title: {title} | text: {d}``
quora-like         ``task: {t} | query: {q}``       ``task: {t} | query: {d}``
STS, pairs         ``task: {t} | query: {s1}``      ``task: {t} | query: {s2}``
classification     ``task: {t} | query: {x}``       —
=================  ===============================  ===============================

The full text is built here and handed to the encoder with an empty sentence-transformers prompt, so a
model's saved prompts are never applied twice and documents can carry their own titles. Mode ``plain`` is the
paper's format ablation (task and text joined by a space); mode ``none`` feeds raw texts as MTEB does (title
and text joined by a space), which makes numbers comparable with the MTEB leaderboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gecko_distill.embedding.formats import format_document, format_query
from gecko_distill.embedding.task_strings import SYMMETRIC_RETRIEVAL_SETS

__all__ = ["InputFormat", "PromptMode"]

PromptMode = Literal["unified", "plain", "none"]


@dataclass(frozen=True)
class InputFormat:
    """How one set's texts are formatted: the mode, the task string and whether documents are symmetric."""

    mode: PromptMode
    task: str
    symmetric_documents: bool = False

    @classmethod
    def for_set(cls, name: str, kind: str, *, mode: PromptMode, task: str) -> InputFormat:
        return cls(
            mode=mode,
            task=task,
            symmetric_documents=kind == "retrieval" and name.lower() in SYMMETRIC_RETRIEVAL_SETS,
        )

    def query(self, text: str) -> str:
        """A query, an STS/pair sentence, or a classification/clustering text (all in the query format)."""
        if self.mode == "none":
            return text
        return format_query(self.task, text, unified=self.mode == "unified")

    def document(self, text: str, title: str = "") -> str:
        """A retrieval document."""
        if self.mode == "none":
            return f"{title} {text}".strip() if title else text.strip()
        if self.symmetric_documents:
            return self.query(f"{title} {text}".strip() if title else text)
        return format_document(text, title or None, unified=self.mode == "unified")

    def describe(self) -> dict[str, str]:
        """The two templates, for result files and reports."""
        return {"query": self.query("{text}"), "document": self.document("{text}", "{title}")}
