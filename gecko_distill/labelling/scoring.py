"""The two LLM scorers of Gecko step 3, over a query's candidate passages.

- Query likelihood (UPR; Sachan et al. 2022): QL(q, p) = mean log P(q tokens | prefix, "Passage: p\\nQuery:").
  Length-normalised so scores are comparable across queries in reports (for one query the ranking is the
  same as with the sum). The pointwise-mutual-information form log P(q | p) - log P(q | no passage) ranks
  a query's candidates exactly as QL does (the subtracted term is the same for all of them), so it is not
  offered: it changes no positive and no fusion.
- Relevance classification (Zhuang et al. 2023): RC(q, p) = log P(" Yes") - log P(" No") after
  "Passage: p\\nQuery: q\\nRelevant:". The margin, not raw log P(" Yes"), which mostly tracks how
  "answerable-looking" a passage is. With the packaged sub-300M models no RC variant we measured (margins,
  label variants, a content-free prior subtracted, graded labels, in-domain examples) ranked better than
  chance on SciFact (docs/labeller.md): ``fusion = "auto"`` measures this per run and drops RC when it does
  not beat the retriever.

Both scorers share the prefix and the per-passage context (:class:`~gecko_distill.prompts.PromptSet`), and
all requests of a batch go to the backend in one ``loglik`` call, so a passage is decoded once for both.

Two shapes of the same work: :func:`score_candidates` is query-major (a query and its candidates: a passage
that is a candidate of many queries is decoded again for each of them); :func:`score_passages` is
passage-major (a passage and every query that retrieved it: decoded once, the queries scored as
continuations of it, issue 13).
"""

from __future__ import annotations

from collections.abc import Sequence

from gecko_distill.llm.base import LLMBackend, LoglikRequest
from gecko_distill.prompts import PromptSet

__all__ = ["SCORERS", "score_candidates", "score_passages"]

#: The scorer names a config may list.
SCORERS = ("ql", "rc")


def score_candidates(
    llm: LLMBackend,
    prompts: PromptSet,
    pairs: Sequence[tuple[str, Sequence[str]]],
    *,
    scorers: Sequence[str] = SCORERS,
) -> list[dict[str, list[float]]]:
    """Score every (query, candidate) pair. ``pairs`` = [(query, [passage texts])]; returns per query
    a dict scorer -> list of scores aligned with the candidates. One backend call for the whole batch."""
    return _score(llm, prompts, [(p, q) for q, ps in pairs for p in ps], [len(ps) for _, ps in pairs], scorers)


def score_passages(
    llm: LLMBackend,
    prompts: PromptSet,
    work: Sequence[tuple[str, Sequence[str]]],
    *,
    scorers: Sequence[str] = SCORERS,
) -> list[dict[str, list[float]]]:
    """Passage-major: ``work`` = [(passage text, [queries that retrieved it])]; returns per passage a dict
    scorer -> list of scores aligned with its queries. Requests go to the backend passage by passage, in
    the given query order, so a backend that groups by context decodes each passage once (and the llama.cpp
    backend packs its queries into shared decode calls; their layout follows this order)."""
    return _score(llm, prompts, [(p, q) for p, qs in work for q in qs], [len(qs) for _, qs in work], scorers)


def _score(llm: LLMBackend, prompts: PromptSet, flat: Sequence[tuple[str, str]], sizes: Sequence[int],
           scorers: Sequence[str]) -> list[dict[str, list[float]]]:
    """Score the (passage, query) pairs of ``flat`` in one backend call; regroup them into ``sizes``."""
    unknown = [s for s in scorers if s not in SCORERS]
    if unknown:
        raise ValueError(f"unknown scorer(s) {unknown}; valid: {', '.join(SCORERS)}")
    want_ql, want_rc = "ql" in scorers, "rc" in scorers
    reqs: list[LoglikRequest] = []
    for p, q in flat:
        if want_ql:
            reqs.append(prompts.ql_request(q, p))
        if want_rc:
            reqs.extend(prompts.rc_requests(q, p))
    res = llm.loglik(reqs, prefix=prompts.ql_prefix) if reqs else []
    out: list[dict[str, list[float]]] = []
    i = 0
    for n in sizes:
        row: dict[str, list[float]] = {s: [] for s in scorers if s in SCORERS}
        for _ in range(n):
            if want_ql:
                row["ql"].append(res[i].mean)
                i += 1
            if want_rc:
                row["rc"].append(res[i].logprob - res[i + 1].logprob)
                i += 2
        out.append(row)
    return out
