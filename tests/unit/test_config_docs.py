"""docs/config.md is generated from the config models and must be current (``gecko-distill config-docs``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from typer.testing import CliRunner

from gecko_distill.cli import app
from gecko_distill.config import PipelineConfig
from gecko_distill.config_docs import collect_keys, render_config_docs, render_type

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_docs_config_md_is_current() -> None:
    assert DOC.is_file(), "docs/config.md is missing: run `gecko-distill config-docs` in the repository root"
    assert DOC.read_text(encoding="utf-8") == render_config_docs(), (
        "docs/config.md is stale (a config model changed): regenerate it with `gecko-distill config-docs` "
        "in the repository root and commit the result")


def test_every_key_of_every_table_is_documented() -> None:
    keys, tables = collect_keys(PipelineConfig)
    documented = {(k.table, k.name) for k in keys}
    for table, (model, _) in tables.items():
        for name in model.model_fields:
            assert (table, name) in documented, f"{table}.{name}"
    # the stage tables validated by their own models are documented key by key
    assert {"[llm]", "[mining]", "[training]", "[evaluation]", "[[training.mix]]"} <= {
        k.type.removeprefix("table ") for k in keys if k.type.startswith("table ")}
    assert ("training", "epochs") in documented and ("evaluation", "data") in documented
    assert all(k.description for k in keys), [k for k in keys if not k.description]


class _Inner(BaseModel):
    """An inner table."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["a", "b"] = Field("a", description="Mode.")
    limit: int | None = Field(None, description="Limit.")


class _Outer(BaseModel):
    """A made-up config: typed and untyped tables."""

    model_config = ConfigDict(extra="forbid")
    inner: _Inner = Field(default_factory=_Inner, description="Typed.")
    items: list[_Inner] = Field(default_factory=list, description="Repeated.")
    loose: dict[str, Any] | None = Field(None, description="Untyped.")


def test_walk_is_generic_typed_lists_and_untyped_tables() -> None:
    keys, _ = collect_keys(_Outer, untyped={})
    rows = {(k.table, k.name): k for k in keys}
    assert rows[("inner", "mode")].type == '"a" | "b"' and rows[("inner", "mode")].default == '"a"'
    assert rows[("inner", "limit")].default == "unset"
    assert rows[("", "items")].type == "table [[items]]" and ("items", "mode") in rows
    assert "see its stage's documentation" in rows[("", "loose")].description
    assert render_type(dict[str, float]) == "dict[str, float]"


def test_cli_writes_and_checks(tmp_path) -> None:
    out = tmp_path / "config.md"
    runner = CliRunner()
    assert runner.invoke(app, ["config-docs", "--out", str(out), "--check"]).exit_code == 1
    res = runner.invoke(app, ["config-docs", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text(encoding="utf-8") == render_config_docs()
    assert runner.invoke(app, ["config-docs", "--out", str(out), "--check"]).exit_code == 0
    assert "docs/config.md" in runner.invoke(app, ["run", "--help"]).output
