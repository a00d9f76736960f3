"""Configs: unknown keys are rejected with the key named, a suggestion and the valid keys."""

from __future__ import annotations

import pytest

from gecko_distill.config import (
    EvaluationConfig,
    GenerationConfig,
    MiningConfig,
    PipelineConfig,
    TrainingConfig,
    load_config,
    load_table,
)
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


def _toml(tmp_path, text: str):
    f = tmp_path / "run.toml"
    f.write_text(text)
    return f


def test_evaluation_table_is_checked_when_the_config_loads(tmp_path) -> None:
    with pytest.raises(ConfigError, match="add a \\[training\\] table"):
        load_config(_toml(tmp_path, '[evaluation]\ndata = ["x"]\n'))
    with pytest.raises(ConfigError, match="needs data"):
        load_config(_toml(tmp_path, "[training]\nepochs = 1\n[evaluation]\ndims = [384]\n"))
    with pytest.raises(ConfigError, match=r"evaluation\.dimz: unknown key \(did you mean 'dims'\?\)"):
        load_config(_toml(tmp_path, '[training]\nepochs = 1\n[evaluation]\ndata = ["x"]\ndimz = 1\n'))


def test_training_and_evaluation_are_typed_tables(tmp_path) -> None:
    cfg = load_config(_toml(tmp_path, '[training]\nepochs = 2\n[evaluation]\ndata = ["x"]\n'))
    assert isinstance(cfg.training, TrainingConfig) and cfg.training.epochs == 2.0
    assert isinstance(cfg.evaluation, EvaluationConfig) and cfg.evaluation.data == ["x"]
    with pytest.raises(ConfigError, match=r"training\.epochz: unknown key \(did you mean 'epochs'\?\)"):
        load_config(_toml(tmp_path, "[training]\nepochz = 2\n"))
    with pytest.raises(ConfigError, match=r"training\.mix\.0\.pathh: unknown key \(did you mean 'path'\?\)"):
        load_config(_toml(tmp_path, '[training]\n[[training.mix]]\npath = "a"\npathh = "b"\n'))


def test_fusion_on_a_scorer_that_does_not_run_fails_at_load(tmp_path) -> None:
    # Used to be a KeyError after the corpus was encoded.
    with pytest.raises(ConfigError, match=r"fusion='rc' ranks by the 'rc' scorer, which scorers=\['ql'\] does not run"):
        load_config(_toml(tmp_path, '[mining]\nfusion = "rc"\nscorers = ["ql"]\n'))
    with pytest.raises(ConfigError, match="scorers is empty.*fusion = 'none'"):
        load_config(_toml(tmp_path, "[mining]\nscorers = []\n"))
    # the LLM-free recipe needs no scorer
    assert load_config(_toml(tmp_path, '[mining]\nfusion = "none"\nscorers = []\n')).mining.fusion == "none"
    with pytest.raises(ConfigError, match="weights has keys \\['qll'\\]"):
        load_config(_toml(tmp_path, "[mining]\nweights = {qll = 1.0}\n"))
    assert load_config(_toml(tmp_path, '[mining]\nfusion = "ql"\nscorers = ["ql"]\n')).mining.scorers == ["ql"]


def test_matryoshka_dims_wider_than_the_base_model_fail_at_load(tmp_path) -> None:
    # all-MiniLM-L6-v2 is 384 wide; read from its config files, no weights loaded.
    with pytest.raises(ConfigError, match=r"matryoshka_dims \[768\] exceed the embedding dimension 384"):
        load_config(_toml(tmp_path, "[training]\nmatryoshka_dims = [768, 384]\n"))
    ok = load_config(_toml(tmp_path, "[training]\nmatryoshka_dims = [384, 128]\n"))
    assert ok.training is not None and ok.training.matryoshka_dims == [384, 128]
    # a model whose width cannot be read without loading it is checked later, when it is loaded
    assert TrainingConfig(base_model="some-org/not-here", matryoshka_dims=[4096]).matryoshka_dims == [4096]


def test_load_table_reads_one_table_and_overlays_the_options_given(tmp_path) -> None:
    f = _toml(tmp_path, '[llm]\nmodel = "a"\nn_ctx = 4096\n[training]\nepochs = 3\nbatch_size = 8\n')
    t = load_table(f, TrainingConfig, table="training", overrides={"epochs": 1, "batch_size": None})
    assert (t.epochs, t.batch_size) == (1.0, 8)                     # None = option not given
    cfg = load_table(f, PipelineConfig, overrides={"llm": {"model": "b", "backend": None}})
    assert (cfg.llm.model, cfg.llm.n_ctx, cfg.llm.backend) == ("b", 4096, "llamacpp")  # nested tables merge
    assert load_table(None, TrainingConfig, overrides={"epochs": 2}).epochs == 2.0
    with pytest.raises(ConfigError, match="invalid config in command line"):
        load_table(None, TrainingConfig, overrides={"epochz": 2})


def test_fields_added_later_leave_the_fingerprint_only_at_their_default() -> None:
    # A stage written before a field existed must keep its fingerprint (and resume as finished) while the
    # field holds its default; what the stage records is still the full config.
    gen = GenerationConfig()
    assert "max_passage_overlap" not in gen.fingerprint_dump()
    assert gen.model_dump()["max_passage_overlap"] is None
    assert GenerationConfig(max_passage_overlap=0.5).fingerprint_dump()["max_passage_overlap"] == 0.5
    train = TrainingConfig()
    assert "hard_negatives" not in train.fingerprint_dump(mode="json")
    assert train.model_dump(mode="json")["hard_negatives"] == 1
    assert TrainingConfig(hard_negatives=3).fingerprint_dump(mode="json")["hard_negatives"] == 3
    assert "merge_with" not in train.fingerprint_dump(mode="json")
    assert "soup_seeds" not in train.fingerprint_dump(mode="json")
    assert TrainingConfig(soup_seeds=3).fingerprint_dump(mode="json")["soup_seeds"] == 3
    # every other field enters the fingerprint
    assert set(gen.model_dump()) - set(gen.fingerprint_dump()) == {"max_passage_overlap"}


def test_prefinetune_table_in_a_run_is_checked_at_load(tmp_path) -> None:
    ok = load_config(_toml(tmp_path, "[prefinetune]\nmax_pairs = 100\n[training]\nepochs = 1\n"))
    assert ok.prefinetune is not None and ok.prefinetune.max_pairs == 100
    with pytest.raises(ConfigError, match=r"\[prefinetune\] prepares the model that \[training\] trains"):
        load_config(_toml(tmp_path, "[prefinetune]\nmax_pairs = 100\n"))
    with pytest.raises(ConfigError, match="a run pre-finetunes on its own \\[corpus\\]"):
        load_config(_toml(tmp_path, '[prefinetune]\n[prefinetune.corpus]\npath = "x"\n[training]\n'))
    with pytest.raises(ConfigError, match="prefinetune.base_model .* differs from training.base_model"):
        load_config(_toml(tmp_path, '[prefinetune]\nbase_model = "other"\n[training]\n'))
    soup = load_config(_toml(tmp_path, '[prefinetune]\ncombine = "average"\n[training]\n'))
    assert soup.prefinetune is not None and soup.prefinetune.combine == "average"
    with pytest.raises(ConfigError, match="combine = 'average' averages the trained model"):
        load_config(_toml(tmp_path, '[prefinetune]\ncombine = "average"\n[training]\nmerge_base = 0.3\n'))
    with pytest.raises(ConfigError, match="merge_with = 'x' needs merge_base > 0"):
        load_config(_toml(tmp_path, '[training]\nmerge_with = "x"\n'))


def test_a_base_model_trained_here_enters_the_training_fingerprint(tmp_path) -> None:
    from gecko_distill.training.loop import finished_fingerprint

    base = tmp_path / "pre"
    base.mkdir()
    assert finished_fingerprint(str(base)) is None               # a plain folder: its path is its identity
    assert finished_fingerprint("all-MiniLM-L6-v2") is None       # packaged / hub names likewise
    (base / "manifest.json").write_text('{"stage": "prefinetune", "fingerprint": "abc"}')
    assert finished_fingerprint(str(base)) == "abc"               # rewritten in place: a new fingerprint
    (base / "manifest.json").write_text("not json")
    assert finished_fingerprint(str(base)) is None
