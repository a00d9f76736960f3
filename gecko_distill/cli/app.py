"""The typer app: each command group lives in its own module exposing ``register(app)``; this file only
assembles them, and ``main`` is the console script."""

from __future__ import annotations

import importlib
import logging

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    name="gecko-distill",
    help="Turn an unlabeled corpus plus any LLM into a compact text embedder (Gecko method).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# One module per command group; each defines register(app).
_COMMAND_MODULES: tuple[str, ...] = (
    "gecko_distill.cli.pipeline_cmds",
    "gecko_distill.cli.train_cmd",
    "gecko_distill.cli.eval_cmds",
    "gecko_distill.cli.labeller_cmd",
    "gecko_distill.cli.models_cmd",
    "gecko_distill.cli.docs_cmd",
)

for _name in _COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    """Entry point of the console script."""
    from gecko_distill._logging import setup_logging

    setup_logging()
    app()
