"""Overlap between training data (corpus passages, generated queries) and evaluation sets.

Two tests, both on a normalised form (Unicode NFC, case-folded, punctuation and symbols dropped, whitespace
collapsed):

- **exact**: the normalised texts are equal;
- **near** (word n-grams, the GPT-3 / PaLM decontamination rule): the two texts share at least one ``n``-gram
  of words (default ``n = 13``). An evaluation text shorter than ``n`` words but at least ``min_words`` long
  counts as one gram of its own length, so a 10-word STS sentence copied inside a passage is caught; shorter
  evaluation texts are only matched exactly (a 4-word sentence recurs by chance). Scripts written without
  spaces (Chinese, Japanese, Thai) are split into characters, each counting as a word.

Evaluation-side texts, by kind: retrieval ``query`` and ``document`` (the corpus), STS and pair-classification
``sentence`` (both sides), classification and clustering ``text`` (the evaluated split). Generating on the
very corpus you evaluate on (BEIR's unsupervised setting, as Promptagator and GPL do) makes every passage a
``document`` hit: that is reported, but by default only hits on queries / sentences / texts drop a passage.

Only ids of evaluation items are reported, never their text.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gecko_distill.corpus.normalize import normalize_text
from gecko_distill.corpus.eval_sets import EvalSet, LabelledSet, PairSet, RetrievalSet

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "ContaminationReport",
    "Hit",
    "OverlapIndex",
    "decontaminate_passages",
    "match_tokens",
    "measure_overlap",
]

logger = logging.getLogger(__name__)

#: Evaluation fields whose overlap drops a passage by default (not ``document``: see the module docstring).
DEFAULT_DROP_FIELDS = ("query", "sentence", "text")

_WORD = re.compile(r"\w+")


def _unspaced(ch: str) -> bool:
    """Characters of scripts written without spaces between words (each is tokenised alone)."""
    o = ord(ch)
    return (
        0x2E80 <= o <= 0x9FFF
        or 0xF900 <= o <= 0xFAFF
        or 0x3040 <= o <= 0x30FF  # CJK, kana
        or 0x0E00 <= o <= 0x0EFF
        or 0x1000 <= o <= 0x109F
        or 0x1780 <= o <= 0x17FF  # Thai/Lao, Myanmar, Khmer
        or 0x20000 <= o <= 0x2FA1F
    )


def _normal_form(text: str) -> str:
    text = normalize_text(text).casefold()
    text = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text)
    return " ".join(text.split())


def match_tokens(text: str) -> list[str]:
    """The word tokens the n-gram test compares (normalised; unspaced scripts split into characters)."""
    out: list[str] = []
    for w in _WORD.findall(_normal_form(text)):
        if any(_unspaced(c) for c in w):
            buf = ""
            for c in w:
                if _unspaced(c):
                    if buf:
                        out.append(buf)
                        buf = ""
                    out.append(c)
                else:
                    buf += c
            if buf:
                out.append(buf)
        else:
            out.append(w)
    return out


@dataclass(frozen=True)
class Hit:
    """One overlap: the evaluation set, field and item id that a training text matched, and how."""

    eval_set: str
    field: str
    eval_id: str
    match: str  # "exact" or "ngram"


class OverlapIndex:
    """Normalised texts and n-grams of evaluation sets, queried with training texts."""

    def __init__(self, *, n: int = 13, min_words: int = 8) -> None:
        if n < 1 or min_words < 1:
            raise ValueError(f"n and min_words must be >= 1 (got n={n}, min_words={min_words})")
        self.n = n
        self.min_words = min(min_words, n)
        self._exact: dict[str, Hit] = {}
        self._grams: dict[int, Hit] = {}
        self._short_lengths: set[int] = set()  # lengths of eval texts indexed as one whole gram
        self.sizes: Counter[tuple[str, str]] = Counter()

    def add(self, eval_set: str, fld: str, eval_id: str, text: str) -> None:
        self.sizes[(eval_set, fld)] += 1
        norm = _normal_form(text)
        if not norm:
            return
        self._exact.setdefault(norm, Hit(eval_set, fld, eval_id, "exact"))
        toks = match_tokens(text)
        hit = Hit(eval_set, fld, eval_id, "ngram")
        if len(toks) >= self.n:
            for i in range(len(toks) - self.n + 1):
                self._grams.setdefault(hash(tuple(toks[i : i + self.n])), hit)
        elif len(toks) >= self.min_words:
            self._grams.setdefault(hash(tuple(toks)), hit)
            self._short_lengths.add(len(toks))

    def add_set(self, s: EvalSet) -> None:
        """Index every evaluated text of a set (see the module docstring for the fields)."""
        if isinstance(s, RetrievalSet):
            for qid, text in s.queries:
                self.add(s.name, "query", qid, text)
            for did, _title, text in s.corpus:
                self.add(s.name, "document", did, text)
        elif isinstance(s, PairSet):
            for i, (a, b) in enumerate(s.pairs):
                self.add(s.name, "sentence", f"{s.split}:{i}:1", a)
                self.add(s.name, "sentence", f"{s.split}:{i}:2", b)
        elif isinstance(s, LabelledSet):
            for i, text in enumerate(s.texts):
                self.add(s.name, "text", f"{s.split}:{i}", text)

    def lookup(self, text: str) -> list[Hit]:
        """Evaluation items overlapping ``text`` (an exact hit first, then n-gram hits, one per item)."""
        hits: dict[tuple[str, str, str], Hit] = {}
        exact = self._exact.get(_normal_form(text))
        if exact is not None:
            hits[(exact.eval_set, exact.field, exact.eval_id)] = exact
        toks = match_tokens(text)
        for length in {self.n, *self._short_lengths}:
            for i in range(len(toks) - length + 1):
                h = self._grams.get(hash(tuple(toks[i : i + length])))
                if h is not None:
                    hits.setdefault((h.eval_set, h.field, h.eval_id), h)
        return list(hits.values())


@dataclass
class ContaminationReport:
    """Which passages and generated queries overlap which evaluation items.

    ``passage_hits`` / ``query_hits`` map a passage id / query key to its hits; ``dropped`` lists the passages
    removed by :func:`decontaminate_passages`.
    """

    n_passages: int
    n_queries: int
    eval_sizes: dict[str, dict[str, int]]
    ngram: int
    min_words: int
    passage_hits: dict[str, list[Hit]] = field(default_factory=dict)
    query_hits: dict[str, list[Hit]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    drop_fields: tuple[str, ...] = DEFAULT_DROP_FIELDS

    @staticmethod
    def _count(hits: dict[str, list[Hit]]) -> dict[str, dict[str, dict[str, int]]]:
        """``{eval_set: {field: {"exact": n, "ngram": n, "any": n}}}``, counting training items."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for item_hits in hits.values():
            seen: dict[tuple[str, str], set[str]] = {}
            for h in item_hits:
                seen.setdefault((h.eval_set, h.field), set()).add(h.match)
            for (es, fl), kinds in seen.items():
                c = out.setdefault(es, {}).setdefault(fl, {"exact": 0, "ngram": 0, "any": 0})
                c["any"] += 1
                c["exact" if "exact" in kinds else "ngram"] += 1
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "passages": self.n_passages,
            "queries": self.n_queries,
            "ngram": self.ngram,
            "min_words": self.min_words,
            "eval_sizes": self.eval_sizes,
            "passages_overlapping": len(self.passage_hits),
            "queries_overlapping": len(self.query_hits),
            "passage_counts": self._count(self.passage_hits),
            "query_counts": self._count(self.query_hits),
            "dropped": len(self.dropped),
            "drop_fields": list(self.drop_fields),
        }

    def to_dict(self, max_examples: int = 50) -> dict[str, Any]:
        def ex(h: dict[str, list[Hit]]) -> list[dict[str, Any]]:
            return [{"id": k, "hits": [vars(x) for x in v]} for k, v in list(h.items())[:max_examples]]

        return {
            **self.summary(),
            "passage_examples": ex(self.passage_hits),
            "query_examples": ex(self.query_hits),
            "dropped_ids": self.dropped,
        }


def _passage_fields(p: Any) -> tuple[str, str]:
    if isinstance(p, dict):
        return str(p.get("id", p.get("_id", ""))), str(p.get("text", ""))
    return str(p.id), str(p.text)


def _build_index(
    eval_sets: Iterable[EvalSet], n: int, min_words: int
) -> tuple[OverlapIndex, dict[str, dict[str, int]]]:
    index = OverlapIndex(n=n, min_words=min_words)
    for s in eval_sets:
        index.add_set(s)
    sizes: dict[str, dict[str, int]] = {}
    for (es, fl), c in index.sizes.items():
        sizes.setdefault(es, {})[fl] = c
    return index, sizes


def measure_overlap(
    passages: Sequence[Any],
    eval_sets: Sequence[EvalSet],
    *,
    queries: Sequence[str] = (),
    n: int = 13,
    min_words: int = 8,
) -> ContaminationReport:
    """Measure overlap of ``passages`` (``Passage`` records or dicts with ``id``/``text``) and generated
    ``queries`` with every evaluated text of ``eval_sets``."""
    index, sizes = _build_index(eval_sets, n, min_words)
    report = ContaminationReport(
        n_passages=len(passages), n_queries=len(queries), eval_sizes=sizes, ngram=n, min_words=index.min_words
    )
    for p in passages:
        pid, text = _passage_fields(p)
        hits = index.lookup(text)
        if hits:
            report.passage_hits[pid] = hits
    for i, q in enumerate(queries):
        hits = index.lookup(q)
        if hits:
            report.query_hits[str(i)] = hits
    logger.info(
        "decontamination: %d/%d passages and %d/%d queries overlap the evaluation sets",
        len(report.passage_hits),
        len(passages),
        len(report.query_hits),
        len(queries),
    )
    return report


def decontaminate_passages(
    passages: Sequence[Any],
    eval_sets: Sequence[EvalSet | str | Path],
    *,
    queries: Sequence[str] = (),
    drop_fields: Sequence[str] = DEFAULT_DROP_FIELDS,
    n: int = 13,
    min_words: int = 8,
) -> tuple[list[Any], ContaminationReport]:
    """Drop passages overlapping evaluation items; for the corpus stage.

    Args:
        passages: ``Passage`` records (or dicts with ``id`` and ``text``).
        eval_sets: Loaded sets or evaluation folders (read in full, kind auto-detected).
        queries: Generated queries to check as well (reported, never dropped here).
        drop_fields: Evaluation fields whose hits drop a passage (``query``, ``document``, ``sentence``,
            ``text``); by default all but retrieval ``document`` (see the module docstring).
        n: n-gram length of the near-duplicate test.
        min_words: Evaluation texts shorter than this are matched exactly only.

    Returns:
        The kept passages (input order) and the report (``dropped`` lists the removed ids).
    """
    from gecko_distill.corpus.eval_sets import load_eval_set

    sets = [load_eval_set(s) if isinstance(s, (str, Path)) else s for s in eval_sets]
    report = measure_overlap(passages, sets, queries=queries, n=n, min_words=min_words)
    report.drop_fields = tuple(drop_fields)
    drop = {pid for pid, hits in report.passage_hits.items() if any(h.field in drop_fields for h in hits)}
    kept = [p for p in passages if _passage_fields(p)[0] not in drop]
    report.dropped = [_passage_fields(p)[0] for p in passages if _passage_fields(p)[0] in drop]
    if drop:
        logger.warning("dropped %d passages overlapping evaluation %s", len(drop), "/".join(drop_fields))
    return kept, report
