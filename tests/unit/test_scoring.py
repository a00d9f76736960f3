"""The two LLM scorers: request layout (one prefix, one context per passage) and, on the REAL packaged
Gemma-3-270M, that the shared-context relevance margin is the label margin it claims to be."""

from __future__ import annotations

import pytest

from gecko_distill.llm.base import LoglikRequest, LoglikResult
from gecko_distill.testing import ScriptedLLM
from gecko_distill.labelling.scoring import score_candidates
from gecko_distill.prompts import load_prompts

PASSAGES = [
    ("Copper is a good conductor of electricity because each atom gives up a free electron that moves through "
    "the metal."),
    "Most of the world's copper is mined in Chile and Peru, from large open-pit mines.",
    "The Moon always shows the same face to Earth because its rotation is tidally locked to its orbit.",
]
QUERY = "why does copper conduct electricity"


def test_requests_share_one_prefix_and_one_context_per_passage():
    prompts = load_prompts()
    seen: list[tuple[str, list[LoglikRequest]]] = []

    class Recorder(ScriptedLLM):
        def loglik(self, requests, *, prefix=""):
            seen.append((prefix, list(requests)))
            # logprob encodes (request index, label) so the arithmetic below is checkable by hand
            return [LoglikResult(-float(i) - (0.5 if r.continuation.endswith(prompts.rc_negative) else 0.0), 2)
                    for i, r in enumerate(requests)]

    out = score_candidates(Recorder(), prompts, [(QUERY, PASSAGES[:2]), ("moon face", PASSAGES[2:])])
    assert len(seen) == 1  # one backend call for the whole batch
    prefix, reqs = seen[0]
    assert prefix == prompts.ql_prefix == prompts.rc_prefix
    assert len(reqs) == 3 * 3  # per candidate: QL + RC positive + RC negative
    for j, p in enumerate(PASSAGES):
        ql, yes, no = reqs[3 * j : 3 * j + 3]
        assert ql.context == yes.context == no.context == prompts.ql_item.format(passage=p)
        q = QUERY if j < 2 else "moon face"
        assert ql.continuation == f" {q}"
        assert yes.continuation == f" {q}{prompts.rc_item}{prompts.rc_positive}"
        assert no.continuation == f" {q}{prompts.rc_item}{prompts.rc_negative}"
    # QL = mean over tokens (2 here); RC = positive - negative logprob of the same candidate
    assert out[0]["ql"] == [0.0, -1.5] and out[1]["ql"] == [-3.0]
    assert out[0]["rc"] == [-1 - (-2.5), -4 - (-5.5)] and out[1]["rc"] == [-7 - (-8.5)]


def test_single_scorer_and_unknown_scorer():
    llm = ScriptedLLM()
    only_ql = score_candidates(llm, load_prompts(), [(QUERY, PASSAGES)], scorers=["ql"])
    assert set(only_ql[0]) == {"ql"} and len(only_ql[0]["ql"]) == 3
    assert llm.calls == [("loglik", 3)]  # RC requests are not even built
    with pytest.raises(ValueError, match="unknown scorer"):
        score_candidates(llm, load_prompts(), [(QUERY, PASSAGES)], scorers=["ql", "yes"])


def test_shared_context_margin_equals_the_label_margin_on_real_gemma(gemma):
    """The query tokens in both RC continuations cancel: the margin equals log P(Yes) - log P(No) scored
    with the query inside the context (|diff| < 1e-3), and QL ranks the answering passage first."""
    prompts = load_prompts()
    out = score_candidates(gemma, prompts, [(QUERY, PASSAGES)])[0]
    ctxs = [prompts.ql_item.format(passage=p) + f" {QUERY}{prompts.rc_item}" for p in PASSAGES]
    direct = gemma.loglik([LoglikRequest(c, lab) for c in ctxs for lab in (prompts.rc_positive, prompts.rc_negative)],
                          prefix=prompts.ql_prefix)
    for j in range(len(PASSAGES)):
        assert out["rc"][j] == pytest.approx(direct[2 * j].logprob - direct[2 * j + 1].logprob, abs=1e-3)
    assert max(range(3), key=out["ql"].__getitem__) == 0
