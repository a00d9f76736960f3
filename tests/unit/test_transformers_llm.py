"""transformers backend: batched scoring with prefix-KV reuse equals naive full-sequence scoring.

Tiny randomly initialised models (built here, no download) check the maths of prefix reuse, right padding,
shared one-token continuations and the sliding-window fallback; model quality is not the point. The real
GGUF through transformers is opt-in (GECKO_TEST_HF_GGUF=1: ~75 s and 3 GB to load) and is also what
bench/llm_scoring.py runs as its naive baseline.
"""

from __future__ import annotations


import pytest

torch = pytest.importorskip("torch")

from gecko_distill.llm.base import GenerationParams, LoglikRequest  # noqa: E402

PREFIX = "instructions and a few examples"
REQS = [LoglikRequest("passage: rivers carry sediment to the sea", " why do deltas grow"),
        LoglikRequest("passage: a short one", " yes"),
        LoglikRequest("passage: a short one", " no"),  # shares the context above: one row, two targets
        LoglikRequest("passage: bees dance to share where food is found in the field", " no"),
        LoglikRequest("", " an empty context"),
        LoglikRequest("passage: nothing to score", "")]


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from gecko_distill.embedding import resolve_embedder_path

    return AutoTokenizer.from_pretrained(resolve_embedder_path("all-MiniLM-L6-v2"))  # a real, local tokenizer


@pytest.fixture(scope="module")
def tiny(tok):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    return LlamaForCausalLM(cfg)


def _reference(model, tok, prefix: str, req: LoglikRequest) -> float:
    """Textbook scoring: one full forward of prefix + context + continuation, sum of the targets' log-probs."""
    pre = tok(prefix, add_special_tokens=True)["input_ids"]
    ctx = tok(req.context, add_special_tokens=False)["input_ids"] if req.context else []
    cont = tok(req.continuation, add_special_tokens=False)["input_ids"] if req.continuation else []
    ids = pre + ctx + cont
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    start = len(pre) + len(ctx)
    return float(sum(lp[start + k - 1, t] for k, t in enumerate(cont)))


@pytest.mark.parametrize("batch_size", [1, 4])
def test_prefix_reuse_and_padding_equal_naive(tiny, tok, batch_size):
    from gecko_distill.llm.transformers_backend import TransformersBackend

    fast = TransformersBackend(tiny, tok, name="tiny", batch_size=batch_size, reuse_prefix=True)
    slow = TransformersBackend(tiny, tok, name="tiny", reuse_prefix=False)
    a, b = fast.loglik(REQS, prefix=PREFIX), slow.loglik(REQS, prefix=PREFIX)
    for r, x, y in zip(REQS, a, b, strict=True):
        ref = _reference(tiny, tok, PREFIX, r)
        assert x.num_tokens == y.num_tokens
        assert abs(x.logprob - ref) < 1e-3 and abs(y.logprob - ref) < 1e-3
    assert a[-1].num_tokens == 0 and a[-1].logprob == 0.0
    # a different prefix gives different scores (the cache is keyed by the prefix)
    c = fast.loglik(REQS[:1], prefix="another prefix")
    assert abs(c[0].logprob - a[0].logprob) > 1e-4
    assert abs(c[0].logprob - _reference(tiny, tok, "another prefix", REQS[0])) < 1e-3


def test_sliding_window_models_fall_back_to_exact_scoring(tok):
    """A window shorter than prefix + item: reuse would change what tokens see, so rows run whole."""
    from transformers import MistralConfig, MistralForCausalLM

    from gecko_distill.llm.transformers_backend import TransformersBackend

    torch.manual_seed(1)
    cfg = MistralConfig(vocab_size=tok.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, sliding_window=6)
    model = MistralForCausalLM(cfg)
    got = TransformersBackend(model, tok, name="swa", batch_size=4).loglik(REQS[:4], prefix=PREFIX)
    for r, x in zip(REQS[:4], got, strict=True):
        assert abs(x.logprob - _reference(model, tok, PREFIX, r)) < 1e-3


def test_generate_respects_max_tokens_stop_and_prefix_reuse(tiny, tok):
    from gecko_distill.llm.transformers_backend import TransformersBackend

    b = TransformersBackend(tiny, tok, name="tiny")
    plain = TransformersBackend(tiny, tok, name="tiny", reuse_prefix=False)
    one = b.generate(["task:"], prefix="p", params=GenerationParams(max_tokens=1))[0]
    eight = b.generate(["task:"], prefix="p", params=GenerationParams(max_tokens=8))[0]
    assert eight == plain.generate(["task:"], prefix="p", params=GenerationParams(max_tokens=8))[0]
    assert eight.startswith(one)  # greedy: the longer output extends the shorter
    words = eight.split()
    if len(words) > 1:  # a stop string cuts the text where it first appears
        cut = b.generate(["task:"], prefix="p", params=GenerationParams(max_tokens=8, stop=(words[1],)))[0]
        assert words[1] not in cut and len(cut) < len(eight)
    hot = GenerationParams(max_tokens=6, temperature=1.0, seed=3)
    assert b.generate(["x", "task:"], params=hot)[1] == b.generate(["task:"], params=hot)[0]  # seeded per prompt


def test_batched_generation_matches_one_at_a_time(tiny, tok):
    """The GPU path (left-padded batches) gives the per-prompt path's greedy text, and sampled text that
    depends only on the prompt and the seed, not on its batch-mates."""
    from gecko_distill.llm.transformers_backend import TransformersBackend

    one = TransformersBackend(tiny, tok, name="tiny")
    many = TransformersBackend(tiny, tok, name="tiny", generate_batch_size=3)
    prompts = ["task:", "a much longer prompt than the others, to force padding", "x", "query: copper"]
    greedy = GenerationParams(max_tokens=6)
    assert many.generate(prompts, prefix="p", params=greedy) == one.generate(prompts, prefix="p", params=greedy)
    hot = GenerationParams(max_tokens=6, temperature=1.0, seed=3)
    alone = many.generate(["task:"], params=hot)[0]
    assert many.generate(prompts, params=hot)[0] == alone
    assert many.generate(["task:"], params=GenerationParams(max_tokens=6, temperature=1.0, seed=4))[0] != alone
    assert many.generate(prompts, params=GenerationParams(max_tokens=6, stop=("a",)))[0].count("a") == 0


def test_models_without_boolean_logits_to_keep_score_the_same(tiny, tok):
    """Older transformers models take only an int ``logits_to_keep``; the fallback keeps the last positions
    and must give the same scores, on both the reused-prefix and the whole-sequence paths."""
    from gecko_distill.llm.transformers_backend import TransformersBackend

    for reuse in (True, False):
        b = TransformersBackend(tiny, tok, name="tiny", batch_size=4, reuse_prefix=reuse)
        b._bool_keep = False
        for r, x in zip(REQS, b.loglik(REQS, prefix=PREFIX), strict=True):
            assert abs(x.logprob - _reference(tiny, tok, PREFIX, r)) < 1e-3


def test_shared_contexts_run_once_and_score_as_naive(tiny, tok):
    """Passage-major requests (several queries per passage, QL and RC labels): each context runs once and its
    cache serves every continuation; scores equal the textbook reference."""
    from gecko_distill.llm.transformers_backend import TransformersBackend

    ctx_a, ctx_b = "passage: rivers carry sediment to the sea", "passage: bees dance to share where food is"
    reqs = [LoglikRequest(c, q) for c in (ctx_a, ctx_b)
            for q in (" why do deltas grow", " why do deltas grow relevant: yes", " how do bees talk", " yes")]
    reqs.append(LoglikRequest("passage: alone", " a context with one request"))
    seen = []

    def count(_module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        seen.append(int(ids.numel()))

    handle = tiny.register_forward_pre_hook(count, with_kwargs=True)
    try:
        got = {}
        for share in (True, False):
            seen.clear()
            be = TransformersBackend(tiny, tok, name="tiny", batch_size=3, share_context=share)
            got[share] = (be.loglik(reqs, prefix=PREFIX), sum(seen))
    finally:
        handle.remove()
    for r, x, y in zip(reqs, got[True][0], got[False][0], strict=True):
        ref = _reference(tiny, tok, PREFIX, r)
        assert abs(x.logprob - ref) < 1e-3 and abs(y.logprob - ref) < 1e-3
        assert x.num_tokens == y.num_tokens
    assert got[True][1] < got[False][1]  # fewer tokens through the model with shared contexts
