"""The stage-directory contract: atomic shard writes, resolved config, ``manifest.json`` written last.

A stage directory looks like::

    DIR/<stage>/
      shards/shard-00000.jsonl   one per finished unit of work (written atomically: temp file + rename)
      <stage>.jsonl, <stage>.parquet   the merged data (written at the end)
      config.json                the resolved config
      manifest.json              written LAST; its presence + matching fingerprint means "done"

Why shards: an interrupted run keeps every finished shard; on resume only missing shards are computed,
and since a shard is renamed into place only when complete, a half-written shard is never read and no
row is ever written twice. The shard plan is a pure function of the inputs and config.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gecko_distill.errors import InputError, StageIncompleteError

__all__ = ["StageDir", "atomic_write_bytes", "atomic_write_text", "fingerprint", "read_jsonl", "to_jsonl"]

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def fingerprint(obj: Any) -> str:
    """Stable short hash of a JSON-serialisable object (key order independent)."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonl(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a JSONL file written by gecko-distill; a bad line is an :class:`InputError` naming it."""
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
    return rows


@dataclass
class StageDir:
    """One stage's directory. ``name`` is also the stem of the merged data files."""

    path: Path
    name: str

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def shard_dir(self) -> Path:
        return self.path / "shards"

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def jsonl_path(self) -> Path:
        return self.path / f"{self.name}.jsonl"

    @property
    def parquet_path(self) -> Path:
        return self.path / f"{self.name}.parquet"

    # -- completion ---------------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.exists():
            return None
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def is_complete(self, fp: str | None = None) -> bool:
        """True when the manifest exists (and, if ``fp`` is given, was written for that fingerprint)."""
        m = self.manifest()
        return m is not None and (fp is None or m.get("fingerprint") == fp)

    def require_complete(self) -> dict[str, Any]:
        m = self.manifest()
        if m is None:
            hint = " (it was interrupted: rerun the same command to resume)" if self.path.exists() else ""
            raise StageIncompleteError(f"{self.path} has no {MANIFEST}{hint}")
        return m

    def prepare(self, fp: str) -> None:
        """Start or resume a run with fingerprint ``fp``; shards from another fingerprint are cleared."""
        self.path.mkdir(parents=True, exist_ok=True)
        marker = self.path / ".fingerprint"
        old = marker.read_text().strip() if marker.exists() else None
        shards = list(self.shard_dir.glob("shard-*.jsonl"))
        # Shards without a marker cannot be attributed to a config (a copied or hand-edited folder): they
        # are dropped too, so rows of two configs are never mixed.
        if old != fp and (old is not None or shards):
            logger.warning("%s: config or inputs changed since the last run; recomputing the stage",
                           self.path)
            for f in shards:
                f.unlink()
            self.manifest_path.unlink(missing_ok=True)
        # Temp files of writes cut short by a kill: never read (no shard-*.jsonl name), removed here so
        # repeated crashes do not pile them up. Safe: shards of this stage are only written after prepare().
        # "*/.*.tmp" covers the stage's sub-folders (shards/, the corpus embeddings' embeddings/).
        for pattern in (".*.tmp", "*/.*.tmp", "*.parquet.tmp"):
            for f in self.path.glob(pattern):
                f.unlink(missing_ok=True)
        atomic_write_text(marker, fp + "\n")

    # -- shards ---------------------------------------------------------------------------------------
    def shard_path(self, index: int) -> Path:
        return self.shard_dir / f"shard-{index:05d}.jsonl"

    def has_shard(self, index: int) -> bool:
        return self.shard_path(index).exists()

    def write_shard(self, index: int, rows: Sequence[dict[str, Any]]) -> None:
        atomic_write_text(self.shard_path(index), to_jsonl(rows))

    def read_shard(self, index: int) -> list[dict[str, Any]]:
        return read_jsonl(self.shard_path(index))

    # -- finishing ------------------------------------------------------------------------------------
    def read_shards(self, num_shards: int) -> list[dict[str, Any]]:
        """All rows of shards 0..num_shards-1, in shard order."""
        rows: list[dict[str, Any]] = []
        for i in range(num_shards):
            rows.extend(self.read_shard(i))
        return rows

    def finalize(
        self,
        rows: list[dict[str, Any]],
        *,
        fp: str,
        config: dict[str, Any],
        summary: dict[str, Any],
        inputs: dict[str, Any] | None = None,
        extra_files: dict[str, str] | None = None,
        started_at: float | None = None,
    ) -> None:
        """Write the merged rows as JSONL + Parquet, config.json and extra files, then manifest.json last."""
        atomic_write_text(self.jsonl_path, to_jsonl(rows))
        self._write_parquet(rows)
        atomic_write_text(self.path / "config.json", json.dumps(config, indent=2, ensure_ascii=False))
        for name, text in (extra_files or {}).items():
            atomic_write_text(self.path / name, text)
        from gecko_distill import __version__

        manifest = {
            "stage": self.name,
            "fingerprint": fp,
            "gecko_distill_version": __version__,
            "rows": len(rows),
            "files": [self.jsonl_path.name, self.parquet_path.name, "config.json", *(extra_files or {})],
            "inputs": inputs or {},
            "summary": summary,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "elapsed_s": round(time.time() - started_at, 2) if started_at else None,
        }
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2, ensure_ascii=False))

    def _write_parquet(self, rows: list[dict[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        # Nested audit columns (dicts/lists of dicts) are stored as JSON strings so that every shard has
        # the same flat schema and `datasets.load_dataset("parquet", ...)` never fails on type drift.
        flat = [{k: (json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v)
                 for k, v in r.items()} for r in rows]
        table = pa.Table.from_pylist(flat) if flat else pa.table({})
        tmp = self.parquet_path.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, self.parquet_path)

    def rows(self) -> list[dict[str, Any]]:
        """The merged rows of a complete stage."""
        self.require_complete()
        return read_jsonl(self.jsonl_path)
