"""Records that cross stage boundaries.

Stages talk only through these types, persisted as JSONL/Parquet rows by :mod:`gecko_distill.artifacts`.
They are frozen, slotted dataclasses: cheap on the hot path and safe to share between threads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["FRetExample", "Passage", "TaskQuery"]


@dataclass(frozen=True, slots=True)
class Passage:
    """One corpus passage. ``id`` is unique within a corpus; ``title`` may be empty."""

    id: str
    text: str
    title: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """An LLM-written (task, query) for a seed passage (Gecko step 1)."""

    passage_id: str
    task_type: str
    task: str
    query: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class FRetExample:
    """One FRet row: (task, query, positive, hard negative) plus the audit trail.

    ``ranks`` maps a score name (``"ql"``, ``"rc"``, ``"fused"``, ``"retriever"``) to the 1-based rank of the
    chosen positive; ``scores`` likewise holds its raw scores. ``candidates`` keeps, per neighbour, the ids
    and scores so the whole decision can be audited or re-fused later.
    """

    task_type: str
    task: str
    query: str
    positive_id: str
    positive_title: str
    positive_text: str
    negative_id: str
    negative_title: str
    negative_text: str
    seed_id: str
    positive_moved: bool
    ranks: dict[str, int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    candidates: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
