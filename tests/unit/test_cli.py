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
