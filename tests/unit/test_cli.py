"""The CLI in-process (typer's CliRunner): help texts, config errors, bad corpora."""

from __future__ import annotations

from typer.testing import CliRunner

from gecko_distill.cli import app

runner = CliRunner()


def test_help_lists_the_pipeline_commands():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("demo", "run", "generate", "mine"):
        assert cmd in r.output


def test_run_with_unknown_key_fails_cleanly(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[generation]\nnum_pasages = 3\n")
    r = runner.invoke(app, ["run", str(cfg)])
    assert r.exit_code == 2
    assert "generation.num_pasages: unknown key (did you mean 'num_passages'?)" in r.output
    assert "Traceback" not in r.output


def test_generate_on_unusable_corpus_names_the_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    r = runner.invoke(app, ["generate", "--corpus", str(bad), "--out", str(tmp_path / "g")])
    assert r.exit_code == 2
    assert f"no usable passages in {bad}" in r.output and "invalid_json" in r.output


def test_mine_reads_its_tables_from_config_and_the_options_override_them(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[corpus]\npath = "{bad}"\n[mining]\nfusion = "rc"\nscorers = ["ql"]\nmax_queries = 3\n')
    args = ["mine", "--config", str(cfg), "--queries", str(tmp_path / "gen"), "--out", str(tmp_path / "fret")]
    r = runner.invoke(app, args)
    assert r.exit_code == 2  # the [mining] table's bad combination, caught before the corpus is read
    assert "fusion='rc' ranks by the 'rc' scorer" in r.output and "no usable passages" not in r.output
    r = runner.invoke(app, [*args, "--fusion", "ql"])  # the option fixes the table; the [corpus] table is read
    assert r.exit_code == 2 and f"no usable passages in {bad}" in r.output


def test_generate_needs_a_corpus_or_a_config(tmp_path):
    r = runner.invoke(app, ["generate", "--out", str(tmp_path / "g")])
    assert r.exit_code == 2 and "give --corpus" in r.output


def test_stage_options_default_to_the_config_table(tmp_path):
    from gecko_distill.cli.pipeline_cmds import _stage_config

    cfg = tmp_path / "c.toml"
    cfg.write_text('[corpus]\npath = "c.jsonl"\n[embedder]\nbatch_size = 7\n[generation]\nbatch_size = 3\n'
                   "max_passage_words = 90\n[mining]\nauto_sample = 8\nauto_labelled = \"beir/x\"\n")
    c = _stage_config(cfg, None, llm=None, llm_backend=None, generation={"batch_size": None},
                      mining={"auto_sample": 16, "max_queries": None}, embedder={"model": None})
    assert (c.generation.batch_size, c.generation.max_passage_words) == (3, 90)
    assert (c.mining.auto_sample, c.mining.auto_labelled, c.embedder.batch_size) == (16, "beir/x", 7)
