"""A sentence-transformers model seen by mteb, encoding each text once for every Matryoshka dim.

MRL models are evaluated at several dims. Re-encoding per dim would multiply the cost of a sweep by the number
of dims; instead :class:`MatryoshkaEncoder` keeps every text's full-dimension embedding (in memory, and on
disk when a store is given) and answers ``encode`` at the current :attr:`~MatryoshkaEncoder.dim` by
truncating to the first ``dim`` coordinates and L2-renormalising. That is exactly what sentence-transformers'
``truncate_dim`` followed by cosine similarity computes, so the sweep costs one encoding pass.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from mteb.models import ModelMeta
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ScoringFunction

from gecko_distill.embedding.batching import BatchTokens, encode_batched
from gecko_distill.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from gecko_distill.evaluation.store import EmbeddingStore

__all__ = ["MatryoshkaEncoder", "halving_dims", "resolve_dims"]

logger = logging.getLogger(__name__)


def halving_dims(full_dim: int) -> list[int]:
    """The full dim and its halvings down to 64 (e.g. 384, 192, 96): what a model that records no dims is
    evaluated at. Not the training default (:func:`gecko_distill.training.config.default_matryoshka_dims`,
    the full dim plus the standard widths below it), since such a model was not trained at any of them."""
    dims = [full_dim]
    while dims[-1] // 2 >= 64 and dims[-1] % 2 == 0:
        dims.append(dims[-1] // 2)
    return dims


def resolve_dims(model_path: str, full_dim: int, requested: list[int] | None) -> list[int]:
    """Dims to evaluate: ``requested``, else the model's ``gecko_distill.json``, else :func:`halving_dims`."""
    if requested:
        too_big = [d for d in requested if d > full_dim]
        if too_big:
            raise ConfigError(
                f"dims {too_big} exceed the model's embedding size {full_dim}; "
                f"pass --dims with values <= {full_dim}"
            )
        if full_dim not in requested:
            logger.warning(
                "dims %s leave out the full dim %d: the untruncated model is not evaluated",
                requested,
                full_dim,
            )
        return sorted(set(requested), reverse=True)
    recorded: list[int] | None = None
    if Path(model_path).is_dir():
        from gecko_distill.training.model_info import read_model_info

        info = read_model_info(model_path)
        if info is not None and info.matryoshka_dims:
            recorded = [d for d in info.matryoshka_dims if d <= full_dim]
    if recorded:
        return sorted(set(recorded) | {full_dim}, reverse=True)
    return halving_dims(full_dim)


class MatryoshkaEncoder(AbsEncoder):
    """mteb's encoder protocol over a :class:`SentenceTransformer`, with a full-dim cache and a settable dim.

    Args:
        model: The loaded model.
        name: Name recorded in mteb's model metadata (e.g. the model path).
        revision: Revision recorded in the metadata (we use the weights' fingerprint).
        batch_size: Encoding batch size (texts per batch, at most).
        batch_tokens: Padded tokens per batch (see :mod:`gecko_distill.embedding.batching`).
        store: Optional on-disk cache of full-dim embeddings.
        show_progress: Show sentence-transformers' progress bar while encoding.

    Texts arrive fully formatted (see :mod:`gecko_distill.evaluation.formatting`) and are encoded with an
    empty prompt, so the model's own saved prompts are not prepended a second time.
    """

    def __init__(
        self,
        model: SentenceTransformer,
        *,
        name: str,
        revision: str | None = None,
        batch_size: int = 32,
        batch_tokens: BatchTokens = "auto",
        store: EmbeddingStore | None = None,
        show_progress: bool = True,
    ) -> None:
        self.model = model
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.full_dim = int(get_dim() or 0)
        if self.full_dim <= 0:
            raise ConfigError(f"model {name!r} does not report its embedding size")
        self.dim: int = self.full_dim
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.store = store
        self.show_progress = show_progress
        self.encoded_texts = 0  # texts actually run through the model (cache misses)
        self.chunk_size = 2048
        self._memory: dict[str, np.ndarray] = {}
        self.mteb_model_meta = ModelMeta.create_empty(
            overwrites={
                "name": name,
                "revision": revision or "local",
                "embed_dim": self.full_dim,
                "similarity_fn_name": ScoringFunction.COSINE,
                "framework": ["Sentence Transformers"],
                "max_tokens": model.max_seq_length,
            }
        )

    def embed(self, texts: list[str], dim: int | None = None) -> np.ndarray:
        """L2-normalised embeddings of ``texts`` truncated to ``dim`` (default: the current :attr:`dim`)."""
        dim = dim or self.dim
        missing = [t for t in dict.fromkeys(texts) if t not in self._memory]
        if missing and self.store is not None:
            found = self.store.get(missing)
            self._memory.update(found)
            missing = [t for t in missing if t not in found]
        # Chunks so that an interrupted run keeps what it encoded (each chunk lands in the store).
        for start in range(0, len(missing), self.chunk_size):
            chunk = missing[start : start + self.chunk_size]
            vecs = encode_batched(
                self.model,
                chunk,
                batch_size=self.batch_size,
                batch_tokens=self.batch_tokens,
                show_progress=self.show_progress,
                prompt="",
                normalize_embeddings=False,
            )
            self.encoded_texts += len(chunk)
            if self.store is not None:
                self.store.put(chunk, vecs)
            self._memory.update(zip(chunk, vecs, strict=True))
        if not texts:
            return np.zeros((0, dim), dtype=np.float32)
        full = np.stack([self._memory[t] for t in texts])
        # MRL: keep the first `dim` coordinates, then renormalise so cosine = dot product again.
        cut = full[:, :dim]
        norms = np.linalg.norm(cut, axis=1, keepdims=True)
        return cut / np.maximum(norms, 1e-12)

    def encode(
        self,
        inputs: Any,
        *,
        task_metadata: Any,
        hf_split: str,
        hf_subset: str,  # noqa: ARG002
        prompt_type: Any = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """mteb's entry point: ``inputs`` is a DataLoader of batches with a ``text`` column."""
        texts = [t for batch in inputs for t in batch["text"]]
        return self.embed(texts)
