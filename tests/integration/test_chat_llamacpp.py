"""Chat prompts on real GGUFs through llama.cpp (``llm.prompt_style = "chat"``).

The instruction-tuned Qwen2.5-Coder-0.5B is an opt-in, sha256-verified asset (``gecko-distill models fetch
qwen2.5-coder-0.5b``); its tests skip when it is not fetched. The packaged Gemma-3-270M is a base model without a
chat template, and asking it for chat prompts is a clear error.
"""

from __future__ import annotations

import pytest

from gecko_distill.errors import BackendUnavailable, ConfigError
from gecko_distill.generation.parsing import parse_task_query
from gecko_distill.llm import GenerationParams, load_llm
from gecko_distill.prompts import prompts_for
from gecko_distill.stage_configs import LLMConfig


def test_a_base_model_without_a_chat_template_is_refused():
    llm = load_llm(LLMConfig(prompt_style="chat", n_threads=2))
    try:
        assert llm.chat_template is None
        with pytest.raises(ConfigError, match="no chat template"):
            prompts_for(llm)
    finally:
        llm.close()


@pytest.fixture(scope="module")
def qwen():
    try:
        llm = load_llm(LLMConfig(model="qwen2.5-coder-0.5b", prompt_style="chat", n_threads=2))
    except BackendUnavailable as e:
        pytest.skip(f"opt-in model not fetched: {e}")
    yield llm
    llm.close()


def test_chat_prompts_parse_the_templates_control_tokens(qwen):
    ps = prompts_for(qwen)
    assert ps.chat and "<|im_start|>" in ps.ql_prefix
    eng = qwen._engine
    assert len(eng.tokenize("<|im_end|>", special=True)) == 1  # one control token, not its spelling
    assert qwen.fingerprint.endswith(":chat")


def test_chat_relevance_and_likelihood_rank_the_right_passage_first(qwen):
    ps = prompts_for(qwen)
    query = "how do honeybees tell each other where food is"
    good = ("Honeybees communicate the direction and distance of food sources to other bees in the hive "
            "through a movement pattern known as the waggle dance.")
    bad = "The bridge was opened in 1932 after six years of construction and was painted red in 1950."
    reqs = [ps.ql_request(query, good), ps.ql_request(query, bad), *ps.rc_requests(query, good),
            *ps.rc_requests(query, bad)]
    ql_good, ql_bad, yes_good, no_good, yes_bad, no_bad = qwen.loglik(reqs, prefix=ps.ql_prefix)
    assert ql_good.mean > ql_bad.mean
    assert yes_good.logprob - no_good.logprob > yes_bad.logprob - no_bad.logprob
    assert yes_good.num_tokens - ql_good.num_tokens < 30  # the turn markers are single tokens


def test_chat_generation_writes_a_parseable_task_and_query(qwen):
    ps = prompts_for(qwen)
    passage = ("Vitamin D is made in the skin when it is exposed to sunlight; people who spend little time "
               "outdoors in winter often have low levels and may need supplements.")
    out = qwen.generate([ps.generation_prompt(passage, "question_answering")], prefix=ps.generation_prefix,
                        params=GenerationParams(max_tokens=64, stop=("\n\n", "\nPassage:", "\nTask type:")))
    task, query = parse_task_query(out[0], passage)
    assert task and query and "<|im" not in out[0]
