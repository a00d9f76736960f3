"""The backend registry: ``llm.backend`` name → backend class, imported on first use."""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING

from gecko_distill.errors import ConfigError

if TYPE_CHECKING:
    from gecko_distill.llm.base import LLMBackend
    from gecko_distill.stage_configs import LLMConfig

__all__ = ["BACKENDS", "load_llm"]

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

    target = BACKENDS.get(config.backend)
    if target is None:
        close = difflib.get_close_matches(config.backend, BACKENDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown llm.backend {config.backend!r}{hint}; valid: {', '.join(sorted(BACKENDS))}")
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls).from_config(config)
