"""A content-addressed on-disk cache of full-dimension embeddings.

Evaluating a trained model always re-evaluates its base beside it; the base's embeddings of a 5k-document
corpus cost minutes on a CPU and never change. Keys are ``sha256(text)`` under a folder named after the
model's fingerprint (a hash of its weight and config files, plus the max sequence length), so a retrained
model in the same folder gets new keys. Shards are written atomically (temp file + rename) and only appended.
"""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from pathlib import Path

import numpy as np

from gecko_distill.artifacts import atomic_write_bytes

__all__ = ["EmbeddingStore", "model_fingerprint"]

logger = logging.getLogger(__name__)

_HASHED_SUFFIXES = (".safetensors", ".bin", ".json", ".txt", ".model", ".pt")
#: Files in a model folder that describe it but do not change its embeddings: the evaluation results that
#: ``evaluate`` records beside a gecko-distill model (training/model_card.py) must not change its fingerprint.
_NOT_HASHED = frozenset({"eval_results.json"})


def model_fingerprint(model_path: str | Path, *, max_seq_length: int | None = None) -> str | None:
    """Hash of a local model folder's weights and configs (``None`` for a hub name: nothing to hash)."""
    root = Path(model_path)
    if not root.is_dir():
        return None
    h = hashlib.sha256()
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix in _HASHED_SUFFIXES
        and p.name not in _NOT_HASHED
        and not any(part.startswith("checkpoint-") for part in p.relative_to(root).parts)
    )
    for p in files:
        h.update(str(p.relative_to(root)).encode())
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    h.update(f"max_seq_length={max_seq_length}".encode())
    return h.hexdigest()[:20]


def _key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


class EmbeddingStore:
    """Full-dimension embeddings of one model, keyed by text, persisted as ``.npz`` shards."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._index: dict[bytes, np.ndarray] = {}
        for shard in sorted(self.folder.glob("shard-*.npz")):
            try:
                with np.load(shard) as z:
                    for k, v in zip(z["keys"], z["vecs"], strict=True):
                        self._index[k.tobytes()] = v
            except (OSError, ValueError, KeyError) as e:  # a foreign or damaged file: ignore, recompute
                logger.warning("ignoring unreadable embedding cache shard %s (%s)", shard, e)
        if self._index:
            logger.info("embedding cache %s: %d vectors", self.folder, len(self._index))

    def __len__(self) -> int:
        return len(self._index)

    def get(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``texts``."""
        out = {}
        for t in texts:
            v = self._index.get(_key(t))
            if v is not None:
                out[t] = v
        return out

    def put(self, texts: list[str], vectors: np.ndarray) -> None:
        """Add vectors (one shard per call)."""
        if not texts:
            return
        # uint8 rows, not numpy "S16" strings: those drop trailing NUL bytes of a digest.
        keys = np.frombuffer(b"".join(_key(t) for t in texts), dtype=np.uint8).reshape(len(texts), 16)
        vecs = np.asarray(vectors, dtype=np.float32)
        buf = io.BytesIO()
        np.savez(buf, keys=keys, vecs=vecs)
        atomic_write_bytes(self.folder / f"shard-{uuid.uuid4().hex[:12]}.npz", buf.getvalue())
        for k, v in zip(keys, vecs, strict=True):
            self._index[k.tobytes()] = v
