"""Chat-template prompts for instruction-tuned LLMs (``llm.prompt_style = "chat"``, issue 16).

The same instructions and few-shot examples as the completion prompts, laid out as conversation turns and
rendered by the model's own chat template (the Jinja template shipped in the GGUF or the tokenizer, rendered as
transformers' ``apply_chat_template`` renders it). The rendered text is split with sentinel strings into the
:class:`~gecko_distill.prompts.template.PromptSet`'s shared prefix and per-item parts, so a backend shares the
prefix's KV state and each passage's context exactly as for completion prompts:

- **generation**: system = the instruction; each example = (user: passage + task type, assistant:
  ``Task: …\\nQuery: …``); the item is the last user turn plus the assistant's opening ``Task:``, so the
  completion has the shape the parser already reads.
- **scoring** (one context per passage for both scorers): system = the relevance instruction; each example =
  (user: passage + query + question, assistant: label). The per-passage context stops at ``Query:`` inside the
  user turn, so query likelihood is still log P(" query" | instructions, passage), a plain likelihood framed
  by the turn markers; relevance classification continues with the question, the end of the user turn, the
  assistant's opening and the label (``Yes`` / ``No``), the answer an instruction-tuned model was tuned to give.
"""

from __future__ import annotations

from typing import Any

from gecko_distill.errors import ConfigError
from gecko_distill.llm.base import ChatTemplate

__all__ = ["ChatTemplate", "chat_parts", "render_chat", "split_rendered"]

# Private-use code points: no tokenizer merges them with their neighbours in the template's text, no template
# trims them, and no corpus text is rendered here (only these markers stand for it).
_P, _T, _Q, _L = "\ue000P\ue001", "\ue000T\ue001", "\ue000Q\ue001", "\ue000L\ue001"


def render_chat(template: ChatTemplate, messages: list[dict[str, str]], *, add_generation_prompt: bool) -> str:
    """Render ``messages`` with the model's template (sandboxed Jinja, transformers' settings).

    A leading BOS text is dropped: every backend adds the BOS token itself when it tokenizes the prefix.
    """
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    try:
        text = env.from_string(template.source).render(
            messages=messages, add_generation_prompt=add_generation_prompt, bos_token=template.bos_token,
            eos_token=template.eos_token, tools=None, documents=None)
    except jinja2.TemplateError as e:
        raise ConfigError(f"the LLM's chat template failed to render ({e}); use llm.prompt_style = "
                          "'completion' for this model") from None
    if template.bos_token and text.startswith(template.bos_token):
        text = text[len(template.bos_token):]
    return text


def split_rendered(prefix_text: str, full: str, first_marker: str) -> tuple[str, str]:
    """(shared prefix, item) of a rendered conversation: the examples' rendering when the full conversation
    starts with it (every common template), else everything before the first per-item marker."""
    cut = len(prefix_text) if prefix_text and full.startswith(prefix_text) else full.index(first_marker)
    return full[:cut], full[cut:]


def _format_string(text: str, markers: dict[str, str]) -> str:
    """Rendered text with ``{name}`` fields where the markers were (literal braces escaped)."""
    text = text.replace("{", "{{").replace("}", "}}")
    for marker, name in markers.items():
        text = text.replace(marker, "{" + name + "}")
    return text


def _turn(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def chat_parts(d: dict[str, Any], template: ChatTemplate) -> dict[str, str]:
    """The PromptSet fields for chat prompts, from a prompt file's sections (``d``: the parsed TOML)."""
    gen, ql, chat = d["generation"], d["query_likelihood"], d.get("chat", {})
    # --- generation ---
    system = chat.get("generation_system", gen["instruction"]).strip()
    shots: list[dict[str, str]] = [_turn("system", system)]
    for ex in gen.get("examples", []):
        shots.append(_turn("user", f"Passage: {ex['passage']}\nTask type: {ex['task_type']}"))
        shots.append(_turn("assistant", f"Task: {ex['task']}\nQuery: {ex['query']}"))
    full = render_chat(template, [*shots, _turn("user", f"Passage: {_P}\nTask type: {_T}")],
                       add_generation_prompt=True) + "Task:"
    gen_prefix, gen_item = split_rendered(render_chat(template, shots, add_generation_prompt=False), full, _P)
    if _P in gen_prefix or _T in gen_prefix:
        raise ConfigError("the LLM's chat template put the passage before the examples; use "
                          "llm.prompt_style = 'completion' for this model")
    # --- scoring: one context per passage, QL scores " query", RC continues to the label ---
    question = chat.get("question", "Does the passage answer or support the query? Answer Yes or No.")
    system = chat.get("scoring_system", ql["instruction"]).strip()
    shots = [_turn("system", system)]
    for ex in ql.get("examples", []):
        shots.append(_turn("user", f"Passage: {ex['passage']}\nQuery: {ex['query']}\n{question}"))
        shots.append(_turn("assistant", ex["label"]))
    full = render_chat(template, [*shots, _turn("user", f"Passage: {_P}\nQuery: {_Q}\n{question}")],
                       add_generation_prompt=True) + _L
    ql_prefix, rest = split_rendered(render_chat(template, shots, add_generation_prompt=False), full, _P)
    context, after = rest.split(" " + _Q, 1)  # the continuation " query" brings its own space
    rc_item = after.split(_L, 1)[0]
    return {
        "generation_prefix": gen_prefix,
        "generation_item": _format_string(gen_item, {_P: "passage", _T: "task_type"}),
        "ql_prefix": ql_prefix,
        "ql_item": _format_string(context, {_P: "passage"}),
        "rc_item": rc_item,
        "rc_positive": str(chat.get("positive_label", "Yes")),
        "rc_negative": str(chat.get("negative_label", "No")),
    }
