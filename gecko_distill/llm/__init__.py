"""LLM access: the two primitives (``generate``, ``loglik``), backends and the response cache.

Modules: :mod:`.base` (the ``LLMBackend`` protocol and its request/result records), :mod:`.registry`
(``load_llm``; backends imported on first use), :mod:`.cache` (content-addressed response cache), one module
per backend. A scripted stand-in for tests lives in :mod:`gecko_distill.testing`, outside this API.
"""

from __future__ import annotations

from gecko_distill.llm.base import GenerationParams, LLMBackend, LoglikRequest, LoglikResult
from gecko_distill.llm.cache import CachedLLM
from gecko_distill.llm.registry import BACKENDS, load_llm

__all__ = [
    "BACKENDS",
    "CachedLLM",
    "GenerationParams",
    "LLMBackend",
    "LoglikRequest",
    "LoglikResult",
    "load_llm",
]
