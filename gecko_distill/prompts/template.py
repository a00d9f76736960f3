"""Prompt templates as package data: a shared prefix (instructions + few-shot examples) and a per-item part.

The prefix is identical for every item so LLM backends evaluate it once (KV reuse). The template file's
``version`` enters cache keys and manifests. Override with a TOML file of the same shape (other languages).
"""

from __future__ import annotations

import importlib.resources
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gecko_distill.errors import ConfigError
from gecko_distill.llm.base import LoglikRequest
from gecko_distill.prompts.chat import ChatTemplate, chat_parts

__all__ = ["PromptSet", "load_prompts", "prompts_for"]


@dataclass(frozen=True)
class PromptSet:
    """Rendered prefixes plus item templates for generation and for the two LLM scorers.

    The scorers share one prefix and one context per passage (``ql_item``): query likelihood scores the
    continuation ``" " + query``, relevance classification ``" " + query + rc_item + label`` for both labels, so
    a backend that groups requests by context decodes each passage once for both (docs/labeller.md).
    """

    version: str
    task_types: dict[str, str]  # key -> human name shown to the LLM
    generation_prefix: str
    generation_item: str
    ql_prefix: str  # shared scoring prefix: instruction + few-shot examples
    ql_item: str  # per-passage context, with {passage}
    rc_item: str  # the relevance question that follows the query, e.g. "\nRelevant:"
    rc_positive: str
    rc_negative: str
    chat: bool = False  # rendered with the LLM's chat template (prompts/chat.py): backends parse its special tokens

    @property
    def rc_prefix(self) -> str:
        """Relevance classification uses the query-likelihood prefix (one prefix, one context per passage)."""
        return self.ql_prefix

    def task_name(self, task_type: str) -> str:
        return self.task_types.get(task_type, task_type.replace("_", " "))

    def generation_prompt(self, passage: str, task_type: str) -> str:
        return self.generation_item.format(passage=passage, task_type=self.task_name(task_type))

    def ql_request(self, query: str, passage: str) -> LoglikRequest:
        # continuation starts with a space: context and continuation are tokenized separately.
        return LoglikRequest(self.ql_item.format(passage=passage), " " + query.strip())

    def rc_requests(self, query: str, passage: str) -> tuple[LoglikRequest, LoglikRequest]:
        """(positive, negative) label requests on the QL context; their difference is the RC margin."""
        ctx = self.ql_item.format(passage=passage)
        head = " " + query.strip() + self.rc_item
        return LoglikRequest(ctx, head + self.rc_positive), LoglikRequest(ctx, head + self.rc_negative)


def _render(section: dict[str, Any], name: str) -> str:
    try:
        parts = [section["instruction"]]
        parts += [section["example"].format(**ex) for ex in section.get("examples", [])]
    except KeyError as e:
        raise ConfigError(f"prompt section [{name}] is missing key {e}") from None
    return "".join(parts)


def load_prompts(path: str | Path | None = None, *, chat_template: ChatTemplate | None = None) -> PromptSet:
    """Load the packaged default prompts, or a TOML override file with the same keys.

    With ``chat_template`` the same instructions and examples are laid out as conversation turns and rendered
    with it (``llm.prompt_style = "chat"``, prompts/chat.py); the version gains a ``-chat`` suffix.
    """
    if path is None:
        text = (importlib.resources.files("gecko_distill.prompts") / "default.toml").read_text(encoding="utf-8")
        src = "default.toml"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"prompt file not found: {path}") from None
        src = str(path)
    try:
        d = tomllib.loads(text)
        gen, ql, rc = d["generation"], d["query_likelihood"], d["relevance"]
        if chat_template is not None:
            return PromptSet(version=f"{d['version']}-chat", chat=True, task_types=dict(d.get("task_types", {})),
                             **chat_parts(d, chat_template))
        return PromptSet(
            version=str(d["version"]),
            task_types=dict(d.get("task_types", {})),
            generation_prefix=_render(gen, "generation"),
            generation_item=gen["item"],
            ql_prefix=_render(ql, "query_likelihood"),
            ql_item=ql["item"],
            rc_item=rc["question"],
            rc_positive=rc.get("positive_label", " Yes"),
            rc_negative=rc.get("negative_label", " No"),
        )
    except (KeyError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{src}: invalid prompt file ({e}); see gecko_distill/prompts/default.toml") from None


def prompts_for(llm: object, path: str | Path | None = None) -> PromptSet:
    """The prompts an LLM backend reads: completion prompts, or chat prompts rendered with the backend's own
    template when it was built with ``llm.prompt_style = "chat"``."""
    if getattr(llm, "prompt_style", "completion") != "chat":
        return load_prompts(path)
    template = getattr(llm, "chat_template", None)
    if template is None:
        raise ConfigError("llm.prompt_style = 'chat' but the LLM has no chat template (a base model, or a "
                          "backend that does not expose one); use llm.prompt_style = 'completion'")
    return load_prompts(path, chat_template=template)
