"""The packaged Gemma-3-270M GGUF through the transformers backend (dequantised, float32, CPU): the route
the GPU runs use (docs/scaling.md). Checked against llama.cpp on the same file: the same tokens, and the same
log-likelihoods up to what de-quantisation changes (llama.cpp computes with the Q4_K_M weights)."""

from __future__ import annotations

import pytest

from gecko_distill.generation.parsing import parse_task_query
from gecko_distill.llm.base import GenerationParams, LoglikRequest
from gecko_distill.prompts import load_prompts

PASSAGES = [
    "Honeybees tell other bees where flowers are by dancing: the angle of the waggle run points to the food and "
    "its length tells the distance.",
    "Copper is a good conductor of electricity because each atom gives up a free electron that moves through "
    "the metal.",
]


@pytest.fixture(scope="module")
def hf_gemma():
    pytest.importorskip("gguf")
    from gecko_distill.config import LLMConfig
    from gecko_distill.llm import load_llm

    return load_llm(LLMConfig(backend="transformers", model="gemma3-270m", device="cpu"))


def test_tokenizer_matches_llamacpp(hf_gemma, gemma):
    """transformers 5.17 converted this tokenizer wrongly (about twice the tokens, garbled generations);
    the pinned version must tokenize the generation prompt exactly as llama.cpp does."""
    text = load_prompts().generation_prefix
    assert hf_gemma._ids(text, special=False) == gemma._engine.tokenize(text)


def test_logliks_agree_with_llamacpp_on_the_same_file(hf_gemma, gemma):
    """The scores mining ranks by: per request the same token count, log-probabilities within 0.25 nats per
    token of llama.cpp's (measured: at most 0.12), and the same ranking of each passage's candidate queries."""
    contexts = ["Passage: Honeybees tell other bees where food is with a waggle dance.\nQuery:",
                "Passage: Copper is a good conductor of electricity because each atom gives up a free "
                "electron.\nQuery:"]
    queries = [" how do bees share food locations", " why does copper conduct electricity",
               " when was the bridge opened"]
    reqs = [LoglikRequest(c, q) for c in contexts for q in queries]
    hf, lc = hf_gemma.loglik(reqs), gemma.loglik(reqs)
    for r, a, b in zip(reqs, hf, lc, strict=True):
        assert a.num_tokens == b.num_tokens, r
        assert abs(a.logprob - b.logprob) <= 0.25 * a.num_tokens, (r, a.logprob, b.logprob)
    for i in range(len(contexts)):
        row = slice(i * len(queries), (i + 1) * len(queries))
        order_hf = sorted(range(len(queries)), key=lambda j, row=row: -hf[row][j].logprob)
        order_lc = sorted(range(len(queries)), key=lambda j, row=row: -lc[row][j].logprob)
        assert order_hf == order_lc
        assert order_hf[0] == i  # the query about the passage ranks first, on both backends


def test_ranks_the_relevant_query(hf_gemma):
    ctx = "Passage: Honeybees tell other bees where food is with a waggle dance.\nQuery:"
    good, bad = hf_gemma.loglik([LoglikRequest(ctx, " how do bees share food locations"),
                                 LoglikRequest(ctx, " when was the bridge opened")])
    assert good.logprob > bad.logprob


def test_batched_generation_writes_the_same_parseable_pairs(hf_gemma):
    """The GPU path's left-padded batches, on the real model: the same text as one prompt at a time, and
    (task, query) pairs the generation stage accepts."""
    prompts = load_prompts()
    items = [prompts.generation_prompt(p, t) for p, t in zip(PASSAGES, ["fact_checking", "question_answering"],
                                                                 strict=True)]
    params = GenerationParams(max_tokens=40, stop=("\n\n", "\nPassage:", "\nTask type:"))
    one = hf_gemma.generate(items, prefix=prompts.generation_prefix, params=params)
    hf_gemma.generate_batch_size = 2
    try:
        batched = hf_gemma.generate(items, prefix=prompts.generation_prefix, params=params)
    finally:
        hf_gemma.generate_batch_size = 1
    assert batched == one
    for out, passage in zip(batched, PASSAGES, strict=True):
        task, query = parse_task_query(out, passage, max_query_words=40)
        assert task and query
