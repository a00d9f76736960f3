"""LLM access: the two primitives (``generate``, ``loglik``), backends and the response cache.

A scripted stand-in for tests lives in :mod:`gecko_distill.testing`, outside the public API.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from gecko_distill.errors import ConfigError
from gecko_distill.llm.base import GenerationParams, LLMBackend, LoglikRequest, LoglikResult
from gecko_distill.llm.cache import CachedLLM

if TYPE_CHECKING:
    from gecko_distill.stage_configs import LLMConfig

__all__ = [
    "BACKENDS",
    "CachedLLM",
    "GenerationParams",
    "LLMBackend",
    "LoglikRequest",
    "LoglikResult",
    "load_llm",
]

#: backend name -> "module:Class"; each class has ``from_config(LLMConfig)``. Imported lazily so that
#: heavy optional dependencies (llama-cpp, vllm, torch) load only when used.
BACKENDS: dict[str, str] = {
    "llamacpp": "gecko_distill.llm.llamacpp:LlamaCppBackend",
    "transformers": "gecko_distill.llm.transformers_backend:TransformersBackend",
    "openai": "gecko_distill.llm.openai_backend:OpenAIBackend",
    "vllm": "gecko_distill.llm.vllm_backend:VLLMBackend",
}


def load_llm(config: LLMConfig) -> LLMBackend:
    """Build the backend named by ``config.backend``."""
    import importlib

    target = BACKENDS.get(config.backend)
    if target is None:
        close = difflib.get_close_matches(config.backend, BACKENDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown llm.backend {config.backend!r}{hint}; valid: {', '.join(sorted(BACKENDS))}")
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls).from_config(config)
