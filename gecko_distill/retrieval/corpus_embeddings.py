"""Corpus embeddings streamed in shards: flat memory, resumable, then indexed incrementally.

:func:`encode_corpus_streaming` reads passages ``shard_size`` at a time, encodes each shard, and writes
it as ``emb-<shard>-<key>.npy`` (temp file + rename, so a half-written shard is never read). ``key``
hashes the model fingerprint and the shard's texts, so a rerun reuses every finished shard whose inputs
are unchanged and re-encodes the rest: that is the resume and the cache at once. The index is then
built from the shards on disk: an IVF index is trained on a seeded sample drawn uniformly from *all*
shards (a corpus sorted by topic would bias a sample taken from its first shards), and every index is
filled shard by shard.

Memory: the texts of one shard, the activations of one batch, one shard of vectors, and the index
(n x d float32 for exact/flat/IVF-Flat; about a quarter of that with ``storage="sq8"``). Without
``out_dir`` the shards go to a temporary directory that lives as long as the returned object.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gecko_distill.artifacts import atomic_write_bytes, atomic_write_text
from gecko_distill.embedding.batching import BatchTokens
from gecko_distill.retrieval.neighbours import Neighbours, encode_texts, exact_search, measure_recall, merge_topk
from gecko_distill.retrieval.passage_index import IndexPlan, PassageIndex, plan_index

__all__ = ["StreamedCorpus", "encode_corpus_streaming", "model_fingerprint", "shard_key"]

logger = logging.getLogger(__name__)


def model_fingerprint(model: Any) -> str:
    """A short hash that changes when the embedding function changes.

    A model may define ``fingerprint`` (a string or a method). Otherwise it is the model's class and
    ``repr`` (for sentence-transformers: modules, ``max_seq_length``, pooling, normalisation), its base
    model name and prompts, and a checksum of its first and last weight tensors (cheap even for large
    models, and it catches fine-tuned weights saved under the same name).
    """
    own = getattr(model, "fingerprint", None)
    if own is not None:
        return str(own() if callable(own) else own)
    h = hashlib.sha256()
    card = getattr(model, "model_card_data", None)
    for part in (type(model).__qualname__, repr(model), str(getattr(card, "base_model", None)),
                 json.dumps(getattr(model, "prompts", None), sort_keys=True, default=str),
                 str(getattr(model, "default_prompt_name", None))):
        h.update(part.encode("utf-8", "replace") + b"\0")
    params = getattr(model, "parameters", None)
    if callable(params):
        tensors = list(params())
        for t in (tensors[:1] + tensors[-1:]) if tensors else []:
            h.update(t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def shard_key(model_fp: str, texts: Sequence[str]) -> str:
    """Content hash of one shard: the model fingerprint plus every text (length-prefixed, unambiguous)."""
    h = hashlib.sha256(model_fp.encode("utf-8") + b"\0")
    for t in texts:
        b = t.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little") + b)
    return h.hexdigest()[:16]


def _shards(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(texts)
    while chunk := list(islice(it, size)):
        yield chunk


def _load_shard(path: Path, rows: int) -> np.ndarray | None:
    """A finished shard, or None when it is missing or unusable (then it is re-encoded)."""
    if not path.exists():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        logger.warning("%s: unreadable embedding shard (%s); re-encoding it", path, e)
        return None
    if arr.ndim != 2 or arr.shape[0] != rows or arr.dtype != np.float32:
        logger.warning("%s: shape %s/%s does not match %d rows; re-encoding it",
                       path, arr.shape, arr.dtype, rows)
        return None
    return arr


@dataclass
class StreamedCorpus:
    """The result of :func:`encode_corpus_streaming`: an index over shards kept on disk.

    Row ids are positions in the input order (0..num_passages-1), as with the in-memory ``search``.
    """

    index: PassageIndex
    num_passages: int
    dim: int
    directory: Path
    shard_paths: list[Path]
    shard_sizes: list[int]
    reused_shards: int = 0
    encoded_shards: int = 0
    encode_seconds: float = 0.0  # reading texts + encoding (or loading finished shards)
    index_seconds: float = 0.0  # training + adding
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def plan(self) -> IndexPlan:
        return self.index.plan

    def search(self, query_emb: np.ndarray, *, k: int) -> Neighbours:
        """Top-``k`` through the planned index (exact or FAISS)."""
        return self.index.search(query_emb, k=k)

    def iter_shards(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(first_row_id, vectors)`` per shard, loaded one at a time (no memory map: RSS stays flat)."""
        start = 0
        for path, size in zip(self.shard_paths, self.shard_sizes, strict=True):
            yield start, np.load(path, allow_pickle=False)
            start += size

    def exact_search(self, query_emb: np.ndarray, *, k: int) -> Neighbours:
        """Exact top-``k`` streamed over the shards on disk (memory: one shard + queries x k)."""
        q = np.ascontiguousarray(query_emb, dtype=np.float32)
        best = Neighbours(np.full((len(q), 0), -1, np.int64), np.full((len(q), 0), -np.inf, np.float32))
        for start, vecs in self.iter_shards():
            best = merge_topk(best, exact_search(q, vecs, k=k, offset=start), k)
        return best

    def vectors(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Embeddings of the given row ids (e.g. seed passages, to score them against their queries)."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.num_passages):
            raise IndexError(f"row ids must be in [0, {self.num_passages}), got {ids.min()}..{ids.max()}")
        start = 0
        for path, size in zip(self.shard_paths, self.shard_sizes, strict=True):
            sel = np.nonzero((ids >= start) & (ids < start + size))[0]
            if len(sel):  # only shards holding a requested row are read
                out[sel] = np.load(path, allow_pickle=False)[ids[sel] - start]
            start += size
        return out

    def measure_recall(self, query_emb: np.ndarray, *, k: int = 20, sample: int = 200,
                       seed: int = 0) -> float:
        """recall@k of :meth:`search` against :meth:`exact_search` on a seeded sample of queries."""
        return measure_recall(lambda q, kk: self.search(q, k=kk), lambda q, kk: self.exact_search(q, k=kk),
                              query_emb, k=k, sample=sample, seed=seed)

    def close(self) -> None:
        """Remove the temporary shard directory (if ``out_dir`` was not given)."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def encode_corpus_streaming(
    model: Any,
    texts: Iterable[str],
    *,
    shard_size: int = 8192,
    out_dir: str | Path | None = None,
    index: str = "auto",
    k: int = 20,
    batch_size: int = 64,
    batch_tokens: BatchTokens = "auto",
    storage: Literal["flat", "sq8"] = "flat",
    seed: int = 0,
    threads: int | None = None,
    show_progress: bool = False,
    **plan_overrides: Any,
) -> StreamedCorpus:
    """Encode ``texts`` (any iterable, consumed once) in shards and index them; see the module doc.

    ``out_dir`` keeps the shards (and makes the call resumable); ``index``/``k``/``storage`` and
    ``plan_overrides`` (``nlist=``, ``nprobe=``, ``ef_search=``) go to
    :func:`~gecko_distill.retrieval.passage_index.plan_index`.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    plan_index(1, 1, index=index, storage=storage)  # fail on a bad index name before encoding anything
    tmp = None if out_dir is not None else tempfile.TemporaryDirectory(prefix="gecko-emb-")
    directory = Path(out_dir if out_dir is not None else tmp.name)  # type: ignore[union-attr]
    directory.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    fp = model_fingerprint(model)
    total = len(texts) if isinstance(texts, Sequence) else None
    paths: list[Path] = []
    sizes: list[int] = []
    reused = encoded = 0
    dim = 0
    shards: Iterable[list[str]] = _shards(texts, shard_size)
    if show_progress:
        from tqdm.auto import tqdm

        shards = tqdm(shards, total=None if total is None else -(-total // shard_size), desc="encode shards")
    for i, chunk in enumerate(shards):
        key = shard_key(fp, chunk)
        path = directory / f"emb-{i:05d}-{key}.npy"
        emb = _load_shard(path, len(chunk))
        if emb is None:
            emb = encode_texts(model, chunk, batch_size=batch_size, batch_tokens=batch_tokens)
            buf = io.BytesIO()
            np.save(buf, emb, allow_pickle=False)
            atomic_write_bytes(path, buf.getvalue())
            for stale in directory.glob(f"emb-{i:05d}-*.npy"):  # same slot, other content: obsolete
                if stale != path:
                    stale.unlink(missing_ok=True)
            encoded += 1
        else:
            reused += 1
        dim = emb.shape[1]
        paths.append(path)
        sizes.append(len(chunk))
        del emb, chunk
    n = sum(sizes)
    if n == 0:
        raise ValueError("encode_corpus_streaming: no texts to encode")
    logger.info("corpus embeddings: %d passages in %d shards (%d reused, %d encoded) under %s",
                n, len(paths), reused, encoded, directory)
    atomic_write_text(directory / "embeddings.json", json.dumps(
        {"model_fingerprint": fp, "num_passages": n, "dim": dim, "shards": [p.name for p in paths],
         "shard_sizes": sizes}, indent=1))

    t1 = time.perf_counter()
    plan = plan_index(n, dim, index=index, k=k, storage=storage, **plan_overrides)
    pindex = PassageIndex(plan, seed=seed, threads=threads)
    corpus = StreamedCorpus(pindex, n, dim, directory, paths, sizes, reused, encoded, t1 - t0, _tmp=tmp)
    if pindex.needs_training:
        # Uniform seeded sample over the whole corpus, gathered shard by shard.
        rows = np.sort(np.random.default_rng(seed).choice(n, size=plan.train_size, replace=False))
        pindex.train(corpus.vectors(rows))
    pindex.add_shards(lambda: (vecs for _, vecs in corpus.iter_shards()))
    corpus.index_seconds = time.perf_counter() - t1
    logger.info("built %s in %.1fs", plan.describe(), corpus.index_seconds)
    return corpus
