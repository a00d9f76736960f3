"""Shared fixtures. Real models load once per session; the benchdata path comes from GECKO_BENCHDATA."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def benchdata_dir() -> Path | None:
    p = Path(os.environ.get("GECKO_BENCHDATA", REPO.parent / "shared" / "benchdata"))
    return p if p.is_dir() else None


@pytest.fixture(scope="session")
def benchdata() -> Path:
    p = benchdata_dir()
    if p is None:
        pytest.skip("no benchdata (set GECKO_BENCHDATA to the shared/benchdata folder)")
    return p


@pytest.fixture(scope="session")
def minilm():
    from gecko_distill.embedding import load_embedder

    return load_embedder("all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def gemma():
    """The real packaged Gemma-3-270M through llama.cpp (loaded once per test session)."""
    from gecko_distill.config import LLMConfig
    from gecko_distill.llm import load_llm

    return load_llm(LLMConfig(backend="llamacpp", model="gemma3-270m"))
