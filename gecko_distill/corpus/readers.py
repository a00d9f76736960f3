"""Corpus readers: JSONL, Parquet, CSV, BEIR folders (``corpus.jsonl[.gz]``) and the packaged demo corpora.

Every reader yields ``(location, raw_row)`` pairs; :func:`read_corpus` turns them into clean
:class:`~gecko_distill.records.Passage` objects. A bad row (invalid JSON, missing or empty text, bad
encoding, too short/long, duplicate id or text) is reported with ``file:line``, counted by reason and
skipped; the run fails only when nothing usable is left.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gecko_distill.corpus.demo import iter_demo_corpus
from gecko_distill.corpus.normalize import dedup_key, normalize_text
from gecko_distill.errors import InputError
from gecko_distill.records import Passage
from gecko_distill.stage_configs import CorpusConfig

__all__ = ["BadRow", "CorpusReport", "read_corpus"]

logger = logging.getLogger(__name__)

_MAX_EXAMPLES = 20  # bad rows kept verbatim in the report (all are counted)


@dataclass(frozen=True, slots=True)
class BadRow:
    location: str  # "file:line"
    reason: str
    detail: str = ""


@dataclass
class CorpusReport:
    """What the reader kept and dropped, by reason, with example locations."""

    source: str
    rows_read: int = 0
    rows_kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    examples: list[BadRow] = field(default_factory=list)

    def add_bad(self, location: str, reason: str, detail: str = "") -> None:
        self.dropped[reason] += 1
        # The first row of every reason is always kept, so the report can point at each kind.
        if len(self.examples) < _MAX_EXAMPLES or self.dropped[reason] == 1:
            self.examples.append(BadRow(location, reason, detail))
        logger.debug("skipping %s: %s %s", location, reason, detail)

    def describe(self) -> str:
        """Rows kept, and per skip reason the count and the first ``file:line`` (for logs and the CLI)."""
        head = f"corpus {self.source}: kept {self.rows_kept} of {self.rows_read} rows"
        if not self.dropped:
            return head
        first = {}
        for b in self.examples:
            first.setdefault(b.reason, b)
        lines = [f"{head}; skipped {sum(self.dropped.values())} bad rows:"]
        for reason, n in self.dropped.most_common():
            b = first.get(reason)
            where = f"first at {b.location}" + (f" ({b.detail})" if b.detail else "") if b else ""
            lines.append(f"  {reason}: {n} {where}".rstrip())
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "rows_read": self.rows_read, "rows_kept": self.rows_kept,
                "dropped": dict(self.dropped),
                "examples": [{"location": b.location, "reason": b.reason, "detail": b.detail} for b in self.examples]}


def _open_text(path: Path) -> io.TextIOBase:
    # errors="strict" so that bad bytes surface per line (we decode line by line below).
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")
    return raw  # type: ignore[return-value]


def _iter_jsonl(path: Path, report: CorpusReport) -> Iterator[tuple[str, dict[str, Any]]]:
    with _open_text(path) as f:
        for lineno, raw in _lines(f, path, report):
            loc = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
                if lineno == 1:
                    line = line.removeprefix("\ufeff")  # a byte-order mark written by some editors
            except UnicodeDecodeError as e:
                report.rows_read += 1
                report.add_bad(loc, "bad_encoding", f"not UTF-8 at byte {e.start}")
                continue
            if not line.strip():
                continue
            report.rows_read += 1
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                report.add_bad(loc, "invalid_json", f"{e.msg} at column {e.colno}")
                continue
            if not isinstance(row, dict):
                report.add_bad(loc, "invalid_json", "row is not a JSON object")
                continue
            yield loc, row


def _lines(f: Any, path: Path, report: CorpusReport) -> Iterator[tuple[int, bytes]]:
    """Numbered raw lines; a file cut short (truncated .gz) ends with one reported bad row, not a crash."""
    lineno = 0
    try:
        for lineno, raw in enumerate(f, 1):  # noqa: B007 (lineno is read after the loop)
            yield lineno, raw
    except (EOFError, OSError, zlib.error) as e:
        report.rows_read += 1
        report.add_bad(f"{path}:{lineno + 1}", "truncated_file",
                       f"{type(e).__name__}: {e}; rows after this are lost")


def _iter_csv(path: Path, report: CorpusReport) -> Iterator[tuple[str, dict[str, Any]]]:
    data = path.read_bytes()
    text = data.decode("utf-8-sig", errors="replace")  # per-row check below; a leading BOM is dropped
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for row in reader:
        report.rows_read += 1
        loc = f"{path}:{reader.line_num}"
        if any(isinstance(v, str) and "\ufffd" in v for v in row.values()):
            report.add_bad(loc, "bad_encoding", "not UTF-8")
            continue
        yield loc, row


def _iter_parquet(path: Path, report: CorpusReport) -> Iterator[tuple[str, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError subclasses for corrupt files
        raise InputError(f"{path}: not a readable Parquet file ({e}); check corpus.format") from None
    n = 0
    for batch in pf.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            n += 1
            report.rows_read += 1
            yield f"{path}:row {n}", row


def _detect(path: Path, fmt: str) -> tuple[str, list[Path]]:
    if fmt == "beir" or path.is_dir():
        for name in ("corpus.jsonl", "corpus.jsonl.gz"):
            if (path / name).exists():
                return "jsonl", [path / name]
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".parquet", ".csv", ".gz"))
            if files:
                return _detect(files[0], "auto")[0], files
        raise InputError(f"{path}: no corpus.jsonl[.gz] (BEIR layout) or data files found")
    if fmt != "auto":
        return fmt, [path]
    name = path.name.lower()
    for ext, kind in ((".jsonl", "jsonl"), (".jsonl.gz", "jsonl"), (".json", "jsonl"), (".parquet", "parquet"),
                      (".csv", "csv")):
        if name.endswith(ext):
            return kind, [path]
    raise InputError(f"{path}: cannot tell the format from the name; set corpus.format to jsonl/parquet/csv/beir")


def _pick(row: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if k in row and row[k] is not None:
            return row[k]
    return None


def read_corpus(config: CorpusConfig) -> tuple[list[Passage], CorpusReport]:
    """Read, normalise, filter and deduplicate a corpus. Raises :class:`InputError` if nothing is left."""
    report = CorpusReport(source=config.path)
    if config.path.startswith("demo:"):
        rows: Iterator[tuple[str, dict[str, Any]]] = (
            (f"{config.path}:{i + 1}", {"_id": p.id, "title": p.title, "text": p.text})
            for i, p in enumerate(iter_demo_corpus(config.path)))
        rows = _count(rows, report)
    else:
        path = Path(config.path)
        if not path.exists():
            raise InputError(f"corpus not found: {path}")
        kind, files = _detect(path, config.format)
        readers = {"jsonl": _iter_jsonl, "csv": _iter_csv, "parquet": _iter_parquet}
        rows = (r for f in files for r in readers[kind](f, report))

    passages: list[Passage] = []
    seen_ids: set[str] = set()
    seen_text: set[str] = set()
    for loc, row in rows:
        pid = _pick(row, config.id_field, "_id", "id", "doc_id")
        text = _pick(row, config.text_field, "text", "contents", "passage")
        title = _pick(row, config.title_field, "title") or ""
        if text is None:
            report.add_bad(loc, "missing_text", f"no {config.text_field!r} field")
            continue
        if not isinstance(text, str) or not isinstance(title, str):
            report.add_bad(loc, "bad_type", "text/title must be strings")
            continue
        text, title = normalize_text(text), normalize_text(title)
        if not text:
            report.add_bad(loc, "empty_text")
            continue
        if len(text) < config.min_chars:
            report.add_bad(loc, "too_short", f"{len(text)} < {config.min_chars} chars")
            continue
        if len(text) > config.max_chars:
            report.add_bad(loc, "too_long", f"{len(text)} > {config.max_chars} chars")
            continue
        pid = str(pid) if pid is not None else f"row-{report.rows_read}"
        if not _encodable(pid):
            report.add_bad(loc, "bad_encoding", "the id is not valid Unicode (lone surrogate)")
            continue
        if pid in seen_ids:
            report.add_bad(loc, "duplicate_id", pid)
            continue
        if config.dedup:
            key = dedup_key(title + "\n" + text)
            if key in seen_text:
                report.add_bad(loc, "duplicate_text", pid)
                continue
            seen_text.add(key)
        seen_ids.add(pid)
        passages.append(Passage(id=pid, title=title, text=text))
        if config.limit is not None and len(passages) >= config.limit:
            break
    report.rows_kept = len(passages)
    if report.dropped:
        logger.warning("%s", report.describe())
    if not passages:
        raise InputError(f"no usable passages in {config.path} ({report.rows_read} rows read; "
                         f"skipped: {dict(report.dropped) or 'none'}). Check corpus.text_field / corpus.format.")
    return passages, report


def _encodable(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _count(rows: Iterator[tuple[str, dict[str, Any]]], report: CorpusReport) -> Iterator[tuple[str, dict[str, Any]]]:
    for r in rows:
        report.rows_read += 1
        yield r
