"""Content-addressed cache of LLM responses (SQLite, one row per call).

Key = sha256(backend fingerprint, primitive, prefix, item, params). A crashed or interrupted stage resumes
without re-asking the LLM for anything it already answered; SQLite commits are atomic, so a kill never
leaves a half-written entry. The cache wraps any :class:`LLMBackend` and is itself one.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from gecko_distill.llm.base import GenerationParams, LLMBackend, LoglikRequest, LoglikResult

__all__ = ["CachedLLM"]


def _key(*parts: object) -> str:
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


class CachedLLM:
    """Wrap ``backend`` so that every answered call is stored in ``path`` (an SQLite file)."""

    def __init__(self, backend: LLMBackend, path: str | Path) -> None:
        self.backend = backend
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        # The table first: SQLite creates the file on its first write, so the file and its table appear in one
        # transaction and a kill here never leaves a database without `kv` (it did with WAL set first).
        self._db.execute("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
        self._db.execute("PRAGMA journal_mode=WAL")
        self.hits = 0
        self.misses = 0

    @property
    def fingerprint(self) -> str:
        return self.backend.fingerprint

    @property
    def prompt_style(self) -> str:
        return getattr(self.backend, "prompt_style", "completion")

    @property
    def chat_template(self) -> object:
        return getattr(self.backend, "chat_template", None)

    def _get_many(self, keys: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                q = f"SELECT k, v FROM kv WHERE k IN ({','.join('?' * len(chunk))})"
                out.update(self._db.execute(q, chunk).fetchall())
        return out

    def _put_many(self, items: list[tuple[str, str]]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", items)
                self._db.execute("COMMIT")
            except BaseException:
                # e.g. disk full or a lock timeout: leave no open transaction behind for the next call.
                self._db.execute("ROLLBACK")
                raise

    def generate(
        self, prompts: Sequence[str], *, prefix: str = "", params: GenerationParams = GenerationParams()
    ) -> list[str]:
        keys = [_key(self.fingerprint, "gen", prefix, p, asdict(params)) for p in prompts]
        found = self._get_many(keys)
        todo = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        if todo:
            outs = self.backend.generate([prompts[i] for i in todo], prefix=prefix, params=params)
            new = [(keys[i], json.dumps(o)) for i, o in zip(todo, outs, strict=True)]
            self._put_many(new)
            found.update(new)
        return [json.loads(found[k]) for k in keys]

    def loglik(self, requests: Sequence[LoglikRequest], *, prefix: str = "") -> list[LoglikResult]:
        keys = [_key(self.fingerprint, "loglik", prefix, r.context, r.continuation) for r in requests]
        found = self._get_many(keys)
        todo = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        if todo:
            outs = self.backend.loglik([requests[i] for i in todo], prefix=prefix)
            new = [(keys[i], json.dumps([o.logprob, o.num_tokens])) for i, o in zip(todo, outs, strict=True)]
            self._put_many(new)
            found.update(new)
        return [LoglikResult(*json.loads(found[k])) for k in keys]

    def close(self) -> None:
        with self._lock:
            self._db.close()
