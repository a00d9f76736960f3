"""The llama.cpp backend on the real packaged Gemma-3-270M GGUF.

Checks what the method relies on: relevant text is more likely than irrelevant text, prefix/context reuse
gives exactly the scores of the plain path, and generation honours its limits and is deterministic.
"""

from __future__ import annotations

import pytest

pytest.importorskip("llama_cpp")

from gecko_distill.llm.base import GenerationParams, LoglikRequest  # noqa: E402

PREFIX = "Each passage below is followed by a search query that it answers.\n\n"
EIFFEL = "Passage: The Eiffel Tower is a wrought-iron lattice tower in Paris, completed in 1889.\nQuery:"
BEES = "Passage: Honeybees tell their hive mates where flowers are with a waggle dance.\nQuery:"
Q_EIFFEL = " when was the eiffel tower built"
Q_BEES = " how do bees tell each other where food is"


@pytest.fixture(scope="module")
def backend():
    from gecko_distill.llm.llamacpp import LlamaCppBackend
    from gecko_distill.llm.packaged import resolve_packaged_llm

    b = LlamaCppBackend(resolve_packaged_llm("gemma3-270m"), n_ctx=512)
    yield b
    b.close()


def test_relevant_query_is_more_likely_than_irrelevant(backend):
    res = backend.loglik([LoglikRequest(EIFFEL, Q_EIFFEL), LoglikRequest(EIFFEL, Q_BEES),
                          LoglikRequest(BEES, Q_BEES), LoglikRequest(BEES, Q_EIFFEL)], prefix=PREFIX)
    assert all(r.num_tokens > 0 and r.logprob < 0 for r in res)
    assert res[0].logprob > res[1].logprob
    assert res[2].logprob > res[3].logprob


def test_reuse_equals_plain_scoring(backend):
    """Prefix cache, snapshot restore and shared contexts give the plain path's scores (|diff| < 1e-3)."""
    reqs = [LoglikRequest(EIFFEL, Q_EIFFEL), LoglikRequest(BEES, Q_EIFFEL),
            LoglikRequest(EIFFEL, Q_EIFFEL + "\nRelevant: Yes"), LoglikRequest(EIFFEL, Q_EIFFEL + "\nRelevant: No"),
            LoglikRequest(EIFFEL, Q_BEES),  # same context as the first: decoded once, the queries branch off
            LoglikRequest("", " Paris is in France"), LoglikRequest(BEES, "")]
    other = "Is the passage relevant to the query?\n\n"
    try:
        backend.reuse_prefix = False
        plain = [r.logprob for r in backend.loglik(reqs, prefix=PREFIX)]
        plain_other = [r.logprob for r in backend.loglik(reqs[:2], prefix=other)]
        backend.reuse_prefix = True
        fast = [r.logprob for r in backend.loglik(reqs, prefix=PREFIX)]
        fast_other = [r.logprob for r in backend.loglik(reqs[:2], prefix=other)]
        again = [r.logprob for r in backend.loglik(reqs[::-1], prefix=PREFIX)][::-1]  # restored snapshot
    finally:
        backend.reuse_prefix = True
    assert plain[-1] == 0.0 and plain[0] != plain[1]
    for a, b in [(plain, fast), (plain_other, fast_other), (plain, again)]:
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-3
    assert max(abs(x - y) for x, y in zip(plain[:2], plain_other, strict=True)) > 1e-2  # the prefix matters


def test_generate_limits_stop_and_determinism(backend):
    prompts = [EIFFEL, BEES]
    p = GenerationParams(max_tokens=8)
    both = backend.generate(prompts, prefix=PREFIX, params=p)
    alone = [backend.generate([x], prefix=PREFIX, params=p)[0] for x in prompts]
    assert both == alone  # an output does not depend on the other prompts of the call
    assert all(isinstance(t, str) and t.strip() for t in both)
    n_tokens = [len(backend._engine.tokenize(t)) for t in both]
    assert max(n_tokens) <= 9  # max_tokens (detokenise/retokenise can merge or split one piece)
    word = both[0].split()[-1]  # greedy: stopping at a word of the free output cuts it right there
    stopped = backend.generate([EIFFEL], prefix=PREFIX, params=GenerationParams(max_tokens=8, stop=(word,)))[0]
    assert stopped == both[0][: both[0].find(word)]
    hot = GenerationParams(max_tokens=6, temperature=1.0, seed=7)
    assert backend.generate([BEES], params=hot) == backend.generate([BEES], params=hot)  # seeded


def test_too_long_input_is_a_clear_error(backend):
    from gecko_distill.errors import BackendError

    with pytest.raises(BackendError, match="n_ctx"):
        backend.loglik([LoglikRequest("word " * 600, " x")])


PASSAGE = ("Honeybees tell their hive mates where flowers are with a waggle dance. The angle of the run on the "
           "vertical comb gives the direction of the food relative to the sun, and the duration of the run gives "
           "its distance; foragers that follow the dance fly out to the advertised patch. Karl von Frisch decoded "
           "the dance in the 1940s and shared the 1973 Nobel Prize in Physiology or Medicine for it. Later "
           "experiments with robotic bees and radar tracking confirmed that recruits use the information.")


@pytest.mark.parametrize("params", [GenerationParams(max_tokens=12),
                                    GenerationParams(max_tokens=12, temperature=0.9, top_p=0.95, seed=3)],
                         ids=["greedy", "sampled"])
def test_generate_shares_a_passage_and_equals_one_at_a_time(backend, params):
    """Q=3 prompts of one passage (+ an unrelated one) decode the passage once; outputs are one-at-a-time's."""
    from gecko_distill.llm.llamacpp import _share_groups
    from gecko_distill.prompts import load_prompts

    prompts_set = load_prompts()
    prompts = [prompts_set.generation_prompt(PASSAGE, t) for t in ("retrieval", "question answering",
                                                                   "fact checking")] + [BEES]
    toks = [backend._engine.tokenize(p) for p in prompts]
    groups = _share_groups(toks)
    assert groups[0][:2] == (0, 3) and groups[0][2] > 100 and groups[1:] == [(3, 4, 0)]  # the passage is shared
    together = backend.generate(prompts, prefix=PREFIX, params=params)
    alone = [backend.generate([p], prefix=PREFIX, params=params)[0] for p in prompts]
    try:
        backend.share_prompt_prefix = False
        plain = backend.generate(prompts, prefix=PREFIX, params=params)
    finally:
        backend.share_prompt_prefix = True
    assert together == alone == plain
    assert len(set(together[:3])) > 1 or params.temperature == 0  # distinct prompts, seeded per prompt
    assert backend.generate(prompts[::-1], prefix=PREFIX, params=params)[::-1] == together  # order-free
