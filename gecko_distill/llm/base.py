"""The two LLM primitives everything in the method needs, and the backend protocol.

- ``generate(prompts, prefix=..., params=...)`` writes the (task, query) completions.
- ``loglik(requests, prefix=...)`` returns log P(continuation | prefix + context) for each request:
  query likelihood uses continuation = the query; relevance classification uses continuation = a label.

The *shared prefix* (instructions + few-shot examples) is passed separately from the per-item text so a
backend can evaluate it once and reuse its KV state for every item (the dominant saving on CPU).
Text convention: the full prompt is ``prefix + context + continuation``; backends tokenize the three
parts separately and concatenate the tokens, so a context should not end in whitespace and a
continuation should start with one (" Yes", " what is ..."), as in lm-eval-harness.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["ChatTemplate", "GenerationParams", "hf_chat_template", "LLMBackend", "LoglikRequest", "LoglikResult"]


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """Sampling parameters; temperature 0 is greedy (deterministic)."""

    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0


@dataclass(frozen=True, slots=True)
class LoglikRequest:
    """Score ``continuation`` after ``context`` (the shared prefix is passed to ``loglik`` separately)."""

    context: str
    continuation: str


@dataclass(frozen=True, slots=True)
class LoglikResult:
    """Sum of the continuation's token log-probs, and how many tokens it had (mean = sum / n)."""

    logprob: float
    num_tokens: int

    @property
    def mean(self) -> float:
        return self.logprob / max(self.num_tokens, 1)


@dataclass(frozen=True, slots=True)
class ChatTemplate:
    """An instruction-tuned model's chat template (Jinja source, from the GGUF or the tokenizer) and the
    special-token texts it may refer to. Backends built with ``llm.prompt_style = "chat"`` expose it as
    ``chat_template``; :func:`gecko_distill.prompts.prompts_for` renders the prompts with it."""

    source: str
    bos_token: str = ""
    eos_token: str = ""


def hf_chat_template(tokenizer: object) -> ChatTemplate | None:
    """A Hugging Face tokenizer's default chat template (transformers, vLLM), or None."""
    src = getattr(tokenizer, "chat_template", None)
    if isinstance(src, dict):  # named templates: the default one
        src = src.get("default")
    if not src:
        return None
    return ChatTemplate(str(src), getattr(tokenizer, "bos_token", None) or "",
                        getattr(tokenizer, "eos_token", None) or "")


@runtime_checkable
class LLMBackend(Protocol):
    """What gecko-distill accepts as an LLM. ``fingerprint`` identifies model + revision for caching."""

    @property
    def fingerprint(self) -> str: ...

    def generate(
        self, prompts: Sequence[str], *, prefix: str = "", params: GenerationParams = GenerationParams()
    ) -> list[str]: ...

    def loglik(self, requests: Sequence[LoglikRequest], *, prefix: str = "") -> list[LoglikResult]: ...
