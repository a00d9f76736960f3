"""vLLM backend on a GPU machine (skipped cleanly where vllm or CUDA is missing)."""

from __future__ import annotations

import pytest

vllm = pytest.importorskip("vllm")
torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_vllm_scores_and_writes_what_the_stages_need():
    from gecko_distill.config import LLMConfig
    from gecko_distill.generation.parsing import parse_task_query
    from gecko_distill.llm import GenerationParams, LoglikRequest, load_llm
    from gecko_distill.prompts import load_prompts

    llm = load_llm(LLMConfig(backend="vllm", model="gemma3-270m"))
    ctx = "Passage: Honeybees tell other bees where food is with a waggle dance.\nQuery:"
    good, bad = llm.loglik([LoglikRequest(ctx, " how do bees share food locations"),
                            LoglikRequest(ctx, " when was the bridge opened")])
    assert good.num_tokens > 0 and bad.num_tokens > 0 and good.logprob < 0 and bad.logprob < 0
    assert good.mean > bad.mean
    # greedy generation of a (task, query) pair that the generation stage's strict parser accepts
    passage = ("Honeybees tell other bees where flowers are by dancing: the angle of the waggle run points to "
               "the food and its length tells the distance.")
    prompts = load_prompts()
    params = GenerationParams(max_tokens=40, stop=("\n\n", "\nPassage:", "\nTask type:"))
    item = prompts.generation_prompt(passage, "question_answering")
    first = llm.generate([item], prefix=prompts.generation_prefix, params=params)
    assert first == llm.generate([item], prefix=prompts.generation_prefix, params=params)  # greedy: repeatable
    task, query = parse_task_query(first[0], passage, max_query_words=40)
    assert task and query
