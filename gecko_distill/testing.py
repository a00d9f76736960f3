"""Test helpers, outside the public API: ScriptedLLM, a deterministic stand-in for an LLM backend.

Used by unit tests of parsing, scoring and selection logic, where the LLM's answer must be fixed in advance.
It is never the only proof that a feature works: integration tests run the real GGUF model.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence

from gecko_distill.llm.base import GenerationParams, LoglikRequest, LoglikResult

__all__ = ["ScriptedLLM"]


def _word_overlap_score(req: LoglikRequest) -> LoglikResult:
    # A toy but sensible scorer: more shared words between context and continuation = higher log-prob.
    ctx = set(req.context.lower().split())
    words = req.continuation.lower().split()
    hits = sum(w in ctx for w in words)
    return LoglikResult(logprob=-float(len(words) - hits) - 0.1 * len(words), num_tokens=max(len(words), 1))


def _identity(obj: object) -> str:
    """The same in every process: a function's name, bytecode, constants and closure values, with
    memory addresses (which differ per process) removed; two different lambdas stay different."""
    code = getattr(obj, "__code__", None)
    if code is None:
        text = repr(obj)
    else:
        cells = [c.cell_contents for c in (getattr(obj, "__closure__", None) or ())]
        text = "|".join([getattr(obj, "__module__", ""), getattr(obj, "__qualname__", ""), code.co_code.hex(),
                         repr(code.co_consts), repr(cells)])
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)


class ScriptedLLM:
    """Returns scripted completions (cycled) and word-overlap log-likelihoods, or custom callables."""

    def __init__(
        self,
        completions: Sequence[str] | Callable[[str], str] = ("task: Given a query, find a passage.\nquery: x",),
        scorer: Callable[[LoglikRequest], LoglikResult] = _word_overlap_score,
    ) -> None:
        self._completions = completions
        self._scorer = scorer
        self._i = 0
        self.calls: list[tuple[str, int]] = []

    @property
    def fingerprint(self) -> str:
        # Not repr(callable): it carries the memory address, which changes in every process and would
        # make every resume look like a config change.
        ident = [_identity(self._completions), _identity(self._scorer)]
        return "scripted:" + hashlib.sha256(repr(ident).encode()).hexdigest()[:8]

    def generate(
        self, prompts: Sequence[str], *, prefix: str = "", params: GenerationParams = GenerationParams()
    ) -> list[str]:
        self.calls.append(("generate", len(prompts)))
        out = []
        for p in prompts:
            if callable(self._completions):
                out.append(self._completions(p))
            else:
                out.append(self._completions[self._i % len(self._completions)])
                self._i += 1
        return out

    def loglik(self, requests: Sequence[LoglikRequest], *, prefix: str = "") -> list[LoglikResult]:
        self.calls.append(("loglik", len(requests)))
        return [self._scorer(r) for r in requests]
