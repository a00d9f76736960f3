"""Embedders (any sentence-transformers model) and Gecko's unified input formats."""

from __future__ import annotations

from gecko_distill.embedding.formats import (
    SYMMETRIC_TASK_TYPES,
    document_prompt,
    format_document,
    format_query,
    query_prompt,
)
from gecko_distill.embedding.loader import PACKAGED_EMBEDDERS, embedder_id, load_embedder, resolve_embedder_path

__all__ = [
    "PACKAGED_EMBEDDERS",
    "SYMMETRIC_TASK_TYPES",
    "document_prompt",
    "embedder_id",
    "format_document",
    "format_query",
    "load_embedder",
    "query_prompt",
    "resolve_embedder_path",
]
