"""Read what a run directory holds; every part is optional.

::

    RUN_DIR/generation/generation.jsonl + manifest.json    (task, query) rows; summary: rows, rejects
    RUN_DIR/fret/fret.jsonl + manifest.json                FRet rows, scores, candidates; positive-moved rate
    RUN_DIR/model/train_log.jsonl                          {"step", "loss", ...} per logging step
    RUN_DIR/eval/summary.json (+ results.json, manifest)   task → model → dim → main score

A stage folder without ``manifest.json`` was interrupted: its rows are still shown, with a note.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gecko_distill.artifacts import read_jsonl
from gecko_distill.errors import InputError

__all__ = ["RunData", "collect_run"]

logger = logging.getLogger(__name__)


@dataclass
class RunData:
    """The parts of a run that exist (``None`` where absent) and notes on what is missing."""

    run_dir: Path
    generation: list[dict[str, Any]] | None = None
    generation_summary: dict[str, Any] | None = None
    fret: list[dict[str, Any]] | None = None
    fret_summary: dict[str, Any] | None = None
    train_log: list[dict[str, Any]] | None = None
    train_manifest: dict[str, Any] | None = None
    eval_summary: dict[str, dict[str, dict[str, float]]] | None = None
    eval_records: list[dict[str, Any]] | None = None
    eval_manifest: dict[str, Any] | None = None
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: invalid JSON ({e.msg} at line {e.lineno})") from None


def _stage(
    run: RunData, folder: Path, stem: str
) -> tuple[list[dict[str, Any]] | None, dict[str, Any] | None]:
    data = folder / f"{stem}.jsonl"
    manifest = folder / "manifest.json"
    if not data.is_file():
        shards = sorted((folder / "shards").glob("shard-*.jsonl")) if folder.is_dir() else []
        if not shards:
            return None, None
        run.notes.append(
            f"{folder.name}/ has no {stem}.jsonl (interrupted): showing {len(shards)} finished shards"
        )
        rows = [r for s in shards for r in read_jsonl(s)]
        return rows, None
    rows = read_jsonl(data)
    if not manifest.is_file():
        run.notes.append(f"{folder.name}/ has no manifest.json: the stage did not finish")
        return rows, None
    return rows, _json(manifest).get("summary")


def collect_run(run_dir: str | Path) -> RunData:
    """Read every known part of ``run_dir``; absent parts are listed in :attr:`RunData.missing`."""
    root = Path(run_dir)
    if not root.is_dir():
        raise InputError(f"run directory not found: {root}")
    run = RunData(run_dir=root)

    run.generation, run.generation_summary = _stage(run, root / "generation", "generation")
    if run.generation is None:
        run.missing.append("generation/generation.jsonl (task mix, query lengths, reject reasons)")
    run.fret, run.fret_summary = _stage(run, root / "fret", "fret")
    if run.fret is None:
        run.missing.append("fret/fret.jsonl (positive-moved rate, QL/RC score histograms)")

    log = root / "model" / "train_log.jsonl"
    if log.is_file():
        run.train_log = [r for r in read_jsonl(log) if isinstance(r.get("loss"), (int, float))]
        if (root / "model" / "manifest.json").is_file():
            run.train_manifest = _json(root / "model" / "manifest.json")
    else:
        run.missing.append("model/train_log.jsonl (training loss)")

    ev = root / "eval"
    if (ev / "summary.json").is_file():
        run.eval_summary = _json(ev / "summary.json")
        if (ev / "results.json").is_file():
            run.eval_records = _json(ev / "results.json")
        if (ev / "manifest.json").is_file():
            run.eval_manifest = _json(ev / "manifest.json")
    else:
        run.missing.append("eval/summary.json (results tables, score vs Matryoshka dim)")
    return run
