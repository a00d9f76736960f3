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
