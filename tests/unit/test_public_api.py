"""The public surface: a sorted __all__, every name importable."""

from __future__ import annotations

import gecko_distill


def test_all_is_sorted_and_resolves():
    assert gecko_distill.__all__ == sorted(gecko_distill.__all__)
    for name in gecko_distill.__all__:
        assert getattr(gecko_distill, name) is not None, name


def test_exact_public_names():
    assert set(gecko_distill.__all__) == {
        "CorpusConfig", "EmbedderConfig", "FRetExample", "GenerationConfig", "LLMConfig", "MiningConfig", "Passage",
        "PipelineConfig", "TaskQuery", "__version__", "evaluate", "generate", "load_config", "load_embedder",
        "load_llm", "mine", "read_corpus", "run_pipeline", "train",
    }
