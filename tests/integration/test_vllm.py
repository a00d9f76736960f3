"""vLLM backend on a GPU machine (skipped cleanly where vllm or CUDA is missing)."""

from __future__ import annotations

import pytest

vllm = pytest.importorskip("vllm")
torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_vllm_loglik_prefers_the_relevant_query():
    from gecko_distill.config import LLMConfig
    from gecko_distill.llm import LoglikRequest, load_llm

    llm = load_llm(LLMConfig(backend="vllm", model="gemma3-270m"))
    ctx = "Passage: Honeybees tell other bees where food is with a waggle dance.\nQuery:"
    good, bad = llm.loglik([LoglikRequest(ctx, " how do bees share food locations"),
                            LoglikRequest(ctx, " when was the bridge opened")])
    assert good.mean > bad.mean
    assert llm.generate(["Passage: bees.\nQuery:"])[0] is not None
