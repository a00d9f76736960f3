"""gecko-distill: turn an unlabeled corpus plus any LLM into a compact text embedder (Gecko, arXiv 2403.20327).

The public API mirrors the CLI::

    generate(passages, llm, config, out_dir=...)          # stage 1: (task, query)
    mine(queries, passages, embedder=..., llm=..., ...)   # stages 2-4: FRet rows
    train(...)                                            # Gecko loss + Matryoshka fine-tuning
    evaluate(...)                                         # base vs trained at every Matryoshka dim
    run_pipeline(PipelineConfig(...))                     # all configured stages, resumable

Heavy modules (torch, sentence-transformers, llama.cpp) are imported on first use, not at import time.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "CorpusConfig": "gecko_distill.config",
    "EmbedderConfig": "gecko_distill.config",
    "FRetExample": "gecko_distill.records",
    "GenerationConfig": "gecko_distill.config",
    "LLMConfig": "gecko_distill.config",
    "MiningConfig": "gecko_distill.config",
    "Passage": "gecko_distill.records",
    "PipelineConfig": "gecko_distill.config",
    "TaskQuery": "gecko_distill.records",
    "evaluate": "gecko_distill.evaluation",
    "generate": "gecko_distill.generation",
    "load_config": "gecko_distill.config",
    "load_embedder": "gecko_distill.embedding",
    "load_llm": "gecko_distill.llm",
    "mine": "gecko_distill.mining",
    "read_corpus": "gecko_distill.corpus",
    "run_pipeline": "gecko_distill.pipeline",
    "train": "gecko_distill.training",
}

__all__ = sorted([*_LAZY, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gecko_distill' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
