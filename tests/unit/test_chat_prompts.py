"""Chat-template prompts (``llm.prompt_style = "chat"``): the default prompts laid out as turns, rendered with a
model's template and split into the shared prefix and per-item parts.

The two templates below are written for the test in the two common shapes (ChatML with a system role, as the
Qwen models use; turn markers without a system role, as Gemma's instruction-tuned models use). The real Qwen
template from a fetched GGUF is exercised in tests/integration/test_chat_llamacpp.py.
"""

from __future__ import annotations

import pytest

from gecko_distill.errors import ConfigError
from gecko_distill.llm.base import ChatTemplate
from gecko_distill.prompts import load_prompts, prompts_for
from gecko_distill.prompts.chat import render_chat

CHATML = ChatTemplate(
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
    eos_token="<|im_end|>")

# no system role: the system text goes in front of the first user turn; BOS written by the template
TURNS = ChatTemplate(
    "{{ bos_token }}{% set sys = '' %}{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] "
    "+ '\n\n' %}{% set messages = messages[1:] %}{% endif %}"
    "{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('roles must alternate user/assistant') }}{% endif %}"
    "{% set role = 'model' if m['role'] == 'assistant' else 'user' %}"
    "{{ '<start_of_turn>' + role + '\n' + (sys if loop.first else '') + m['content'] + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}",
    bos_token="<bos>", eos_token="<eos>")


@pytest.mark.parametrize("template", [CHATML, TURNS], ids=["chatml", "no-system-role"])
def test_chat_prompts_render_the_same_conversation_as_the_template(template):
    ps = load_prompts(chat_template=template)
    assert ps.chat and ps.version.endswith("-chat")
    passage, query = "Tea contains caffeine.", "does tea have caffeine"
    # generation: prefix + item is the whole conversation, ending in the assistant's "Task:"
    gen = ps.generation_prefix + ps.generation_prompt(passage, "fact_checking")
    want = render_chat(template, [
        *_gen_shots(template), {"role": "user", "content": f"Passage: {passage}\nTask type: fact checking"}],
        add_generation_prompt=True) + "Task:"
    assert gen == want
    assert not gen.startswith("<bos>")  # backends add BOS themselves
    # scoring: QL context stops at "Query:" inside the user turn; RC continues to the assistant's label
    ql = ps.ql_request(query, passage)
    pos, neg = ps.rc_requests(query, passage)
    assert ql.context.endswith(f"Passage: {passage}\nQuery:") and ql.continuation == " " + query
    assert pos.context == ql.context == neg.context
    assert pos.continuation.startswith(" " + query) and pos.continuation.endswith("Yes")
    assert neg.continuation.endswith("No")
    full = ps.ql_prefix + pos.context + pos.continuation
    assert full.endswith("Answer Yes or No." + ("<|im_end|>\n<|im_start|>assistant\nYes" if template is CHATML
                                                 else "<end_of_turn>\n<start_of_turn>model\nYes"))
    assert ps.ql_prefix.count("Passage:") == 2  # the two labelled examples, as in the completion prompts


def _gen_shots(template):
    import tomllib
    from importlib.resources import files

    d = tomllib.loads((files("gecko_distill.prompts") / "default.toml").read_text(encoding="utf-8"))
    shots = [{"role": "system", "content": d["generation"]["instruction"].strip()}]
    for ex in d["generation"]["examples"]:
        shots += [{"role": "user", "content": f"Passage: {ex['passage']}\nTask type: {ex['task_type']}"},
                  {"role": "assistant", "content": f"Task: {ex['task']}\nQuery: {ex['query']}"}]
    return shots


def test_braces_in_a_template_stay_literal():
    tpl = ChatTemplate(CHATML.source.replace("'<|im_start|>' + m['role']", "'<|im_start|>{' + m['role'] + '}'"))
    ps = load_prompts(chat_template=tpl)
    assert ps.generation_prompt("p", "search_result").startswith("<|im_start|>{user}\nPassage: p\n")


def test_a_broken_template_is_a_config_error():
    with pytest.raises(ConfigError, match="chat template failed to render"):
        load_prompts(chat_template=ChatTemplate("{{ raise_exception('no system role') }}"))


class _Backend:
    fingerprint = "fake"

    def __init__(self, style, template):
        self.prompt_style, self.chat_template = style, template


def test_prompts_follow_the_backend():
    assert not prompts_for(_Backend("completion", CHATML)).chat  # completion unless the LLM was built for chat
    assert prompts_for(_Backend("chat", CHATML)).chat
    with pytest.raises(ConfigError, match="no chat template"):
        prompts_for(_Backend("chat", None))


def test_openai_backend_refuses_chat_prompts():
    from gecko_distill.llm.openai_backend import OpenAIBackend
    from gecko_distill.stage_configs import LLMConfig

    with pytest.raises(ConfigError, match="not supported by the openai backend"):
        OpenAIBackend.from_config(LLMConfig(backend="openai", base_url="http://127.0.0.1:1/v1", prompt_style="chat"))
