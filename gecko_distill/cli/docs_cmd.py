"""`config-docs`: regenerate docs/config.md from the pydantic config models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["register"]

console = Console()


def register(app: typer.Typer) -> None:
    @app.command(name="config-docs")
    def config_docs(
        out: Annotated[Path, typer.Option(help="Where to write the page.")] = Path("docs/config.md"),
        check: Annotated[bool, typer.Option(help="Write nothing; exit 1 when OUT is not current.")] = False,
    ) -> None:
        """Write docs/config.md: every TOML key of `run`'s config with its type, default and meaning, generated
        from the config models (run it after changing a config model)."""
        from gecko_distill.config_docs import render_config_docs, write_config_docs

        if check:
            current = out.is_file() and out.read_text(encoding="utf-8") == render_config_docs()
            console.print(f"{out} is {'current' if current else 'stale: run `gecko-distill config-docs`'}")
            raise typer.Exit(code=0 if current else 1)
        console.print(f"wrote {write_config_docs(out)}")
