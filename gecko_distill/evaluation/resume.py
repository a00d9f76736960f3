"""Skip an evaluation that is already done: read a finished ``evaluate`` output folder back.

An evaluation folder is finished when its ``manifest.json`` (written last) exists; it is current for a model
and a config when the manifest records the same config and the same weights fingerprint for every model
(a model retrained in place gets a new fingerprint, so its evaluation runs again). ``gecko-distill run`` uses
this to skip the evaluation stage of a finished run, as it skips the other stages.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from gecko_distill.evaluation.config import EvaluationConfig
from gecko_distill.evaluation.runner import EvaluationResult, ScoreRecord

__all__ = ["finished_evaluation"]

logger = logging.getLogger(__name__)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def finished_evaluation(out_dir: str | Path, *, model: str, config: EvaluationConfig) -> EvaluationResult | None:
    """The finished evaluation of ``model`` with ``config`` in ``out_dir``, or ``None`` when it must (re)run."""
    from gecko_distill.embedding import resolve_embedder_path
    from gecko_distill.evaluation.store import model_fingerprint

    out = Path(out_dir)
    manifest = _read(out / "manifest.json")
    records = _read(out / "results.json")
    summary = _read(out / "summary.json")
    if not isinstance(manifest, dict) or not isinstance(records, list) or not isinstance(summary, dict):
        return None
    if manifest.get("config") != config.model_dump():
        return None
    names = {"trained": model, **({"base": config.base} if config.base else {})}
    models = manifest.get("models", {})
    if set(models) != set(names):
        return None
    for label, name in names.items():
        info = models[label]
        path = resolve_embedder_path(name)
        expected = model_fingerprint(path, max_seq_length=info.get("max_seq_length")) or "local"  # hub: "local"
        if info.get("name") != name or info.get("fingerprint") != expected:
            return None
    logger.info("%s holds a finished evaluation of %s with this config: skipping", out, model)
    return EvaluationResult(
        records=[ScoreRecord(**{**r, "notes": tuple(r.get("notes", ()))}) for r in records],
        models=models, sets=manifest.get("sets", []), out_dir=out, elapsed_s=float(manifest.get("elapsed_s", 0)),
        summary=summary)
