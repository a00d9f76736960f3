"""Configs: unknown keys are rejected with the key named, a suggestion and the valid keys."""

from __future__ import annotations

import pytest

from gecko_distill.config import MiningConfig, PipelineConfig, load_config
from gecko_distill.errors import ConfigError


def test_unknown_key_names_key_and_suggests(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[mining]\nnum_neighbors = 20\n')
    with pytest.raises(ConfigError) as e:
        load_config(f)
    msg = str(e.value)
    assert "mining.num_neighbors: unknown key (did you mean 'num_neighbours'?)" in msg
    assert "valid keys:" in msg and "negative_policy" in msg


def test_bad_values_name_the_allowed_ones(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[llm]\nbackend = "llama"\n[mining]\nnegative_policy = "worst"\n')
    with pytest.raises(ConfigError) as e:
        load_config(f)
    msg = str(e.value)
    assert "llm.backend" in msg and "'llamacpp'" in msg and "'openai'" in msg
    assert "negative_policy='worst' is not one of 'last', 'random', 'rank:K'" in msg


def test_api_key_must_be_a_variable_name():
    with pytest.raises(ValueError, match="NAME of an environment variable"):
        PipelineConfig.model_validate({"llm": {"api_key_env": "sk-abc123-secret"}})


def test_full_config_round_trip(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('out_dir = "x"\n[corpus]\npath = "demo:gensim-wiki"\nlimit = 5\n[mining]\nnegative_policy = "rank:10"\n')
    cfg = load_config(f)
    assert cfg.corpus.limit == 5 and cfg.mining.negative_policy == "rank:10" and cfg.mining.num_neighbours == 20
    assert MiningConfig().rrf_k == 0.0  # the paper's 1/r_QL + 1/r_RC


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.toml")
    (tmp_path / "b.toml").write_text("[mining\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "b.toml")


def test_queries_per_passage_beyond_the_task_types_needs_sampling() -> None:
    from gecko_distill.config import GenerationConfig

    assert GenerationConfig(queries_per_passage=4).queries_per_passage == 4     # 4 task types: 4 distinct prompts
    with pytest.raises(ValueError, match="temperature > 0"):
        GenerationConfig(queries_per_passage=5)
    assert GenerationConfig(queries_per_passage=5, temperature=0.7).queries_per_passage == 5


def test_legacy_unified_format_key_still_loads() -> None:
    from gecko_distill.training import TrainingConfig

    assert TrainingConfig(unified_format=False).input_format == "plain"
    assert TrainingConfig(unified_format=True).input_format == "unified"
    assert TrainingConfig().input_format == "auto"


def test_evaluation_table_is_checked_before_any_work(tmp_path) -> None:
    from gecko_distill.pipeline import run_pipeline

    cfg = PipelineConfig(out_dir=str(tmp_path / "run"), evaluation={"data": ["x"]})
    with pytest.raises(ConfigError, match="add a \\[training\\] table"):
        run_pipeline(cfg, progress=False)
    cfg = PipelineConfig(out_dir=str(tmp_path / "run"), training={"epochs": 1}, evaluation={"dims": [384]})
    with pytest.raises(ConfigError, match="needs data"):
        run_pipeline(cfg, progress=False)
    cfg = PipelineConfig(out_dir=str(tmp_path / "run"), training={"epochs": 1}, evaluation={"data": ["x"], "dimz": 1})
    with pytest.raises(ConfigError, match="dimz"):
        run_pipeline(cfg, progress=False)
    assert not (tmp_path / "run").exists()                         # nothing started
