"""Strict parsing of the LLM's (task, query) completion, with a reject reason for everything else.

The completion continues a prompt that ends in ``Task:``, so a good one looks like::

     Given a question, retrieve passages that answer it.
    Query: why did the delta grow

Reject reasons (counted in the stage summary): ``empty``, ``malformed`` (no ``Query:`` line),
``missing_task``, ``empty_query``, ``too_long``, ``copy_of_passage``, ``near_copy`` (when
``max_passage_overlap`` is set: see :func:`passage_overlap`), ``generic`` (when filtered: see :func:`is_generic`),
``duplicate_query`` (stage level).
"""

from __future__ import annotations

import re

from gecko_distill.corpus.normalize import normalize_text
from gecko_distill.errors import ParseError

__all__ = ["REJECT_REASONS", "is_generic", "parse_task_query", "passage_overlap"]

REJECT_REASONS = ("empty", "malformed", "missing_task", "empty_query", "too_long", "copy_of_passage",
                  "near_copy", "generic", "duplicate_query")

# A query that points at "the article" / "this study" / "the author" is about a passage the searcher never
# saw: it cannot be answered from a corpus, and teaches the student nothing about the domain.
_DEICTIC = re.compile(
    r"\b(the|this|that|these|above|given|following)\s+(article|passage|text|paper|document|study|studies|"
    r"abstract|excerpt|report|author|authors|researchers|findings|results)\b", re.IGNORECASE)
_STOP = frozenset("a an the of in on for to and or is are was were be been what which who how why when where "
                  "does do did it its this that these those with by from as at about".split())


def is_generic(query: str) -> bool:
    """True for a query that needs its passage to make sense (points at "the study" / "the article" and names
    fewer than four other content words) or names fewer than two content words at all."""
    deictic = _DEICTIC.search(query)
    rest = _DEICTIC.sub(" ", query) if deictic else query
    content = [w for w in re.findall(r"[\w-]+", rest.casefold()) if w not in _STOP]
    # "What is the purpose of the study?" names nothing; "the study links iris colour to macular pigment
    # density" still names its subject: a deictic phrase is fatal only when little else is said.
    return len(content) < (4 if deictic else 2)

_WORD = re.compile(r"\w+")


def passage_overlap(query: str, passage: str, n: int = 4) -> float:
    """Share of the query's word n-grams (casefolded) that occur in the passage; 0 for a query under n words.

    Why: a query stitched from its passage's own phrases is found by word overlap alone, so the round-trip
    filter keeps it and the student learns nothing a lexical match does not already know. Measured on SciFact
    (docs/headline.md): real claims share 4% of their word 4-grams with the abstracts judged relevant to them,
    Gemma-3-270M's queries 18%, Qwen2.5-Coder-0.5B's 46%; training on the latter did worse on equal passages.
    """
    q, p = _WORD.findall(query.casefold()), _WORD.findall(normalize_text(passage).casefold())
    if len(q) < n:
        return 0.0
    grams = set(zip(*(p[i:] for i in range(n)), strict=False))
    qgrams = list(zip(*(q[i:] for i in range(n)), strict=False))
    return sum(g in grams for g in qgrams) / len(qgrams)


_QUERY_LINE = re.compile(r"^\s*query\s*[:：]\s*(.*)$", re.IGNORECASE)
_QUOTES = "\"'“”‘’«»「」"


def _clean(s: str) -> str:
    return normalize_text(s).strip(_QUOTES + " ").strip()


def parse_task_query(completion: str, passage: str, *, max_query_words: int = 40,
                     filter_generic: bool = False, max_passage_overlap: float | None = None) -> tuple[str, str]:
    """Return ``(task, query)`` or raise :class:`ParseError` whose ``reason`` is a reject key."""
    if not completion or not completion.strip():
        raise ParseError("empty", "the LLM returned nothing")
    lines = completion.strip("\n").splitlines()
    if _QUERY_LINE.match(lines[0]):
        raise ParseError("missing_task", "the completion starts with the query, no task line")
    task = _clean(lines[0])
    query = None
    for line in lines[1:]:
        m = _QUERY_LINE.match(line)
        if m:
            query = _clean(m.group(1))
            break
        if line.strip() == "" and query is None:
            break  # a blank line ends the example: no query was written
    if query is None:
        raise ParseError("malformed", "no 'Query:' line after the task line")
    if not task:
        raise ParseError("missing_task", "the task line is empty")
    if not query:
        raise ParseError("empty_query", "the query is empty")
    n_words = len(query.split())
    if n_words > max_query_words or len(query) > max_query_words * 12:
        raise ParseError("too_long", f"{n_words} words > {max_query_words}")
    # The task is one sentence; a run-on task line (a model that never stops) is junk too.
    if len(task.split()) > 2 * max_query_words or len(task) > 2 * max_query_words * 12:
        raise ParseError("too_long", f"task line of {len(task.split())} words")
    q, p = query.casefold(), normalize_text(passage).casefold()
    # A query that repeats >= 8 words (or most of itself) of the passage verbatim is a copy, not a query.
    if q == p or (len(q) >= 40 and q in p and n_words >= 8):
        raise ParseError("copy_of_passage", "the query copies the passage")
    if max_passage_overlap is not None and (ov := passage_overlap(query, passage)) >= max_passage_overlap:
        raise ParseError("near_copy", f"{ov:.0%} of the query's word 4-grams are the passage's "
                         f"(max_passage_overlap = {max_passage_overlap})")
    if filter_generic and is_generic(query):
        raise ParseError("generic", "the query needs its passage to make sense, or names almost nothing")
    return task, query
