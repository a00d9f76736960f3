"""The `gecko-distill` command line: thin wrappers (parse → config → call → render).

Modules: :mod:`.app` (the typer app and ``main``), :mod:`.pipeline_cmds` (demo, run, generate, mine),
:mod:`.train_cmd` (train, prefinetune), :mod:`.eval_cmds` (evaluate, report, decontam),
:mod:`.labeller_cmd` (check-labeller, rerank-eval).
"""

from __future__ import annotations

from gecko_distill.cli.app import app, main

__all__ = ["app", "main"]
