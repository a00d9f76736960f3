"""First-stage retrieval: the embedder's top-N neighbours of each query.

Modules: :mod:`.neighbours` (exact top-k, the seed forced in, recall of an approximate search),
:mod:`.passage_index` (index planning, FAISS indexes, ``search`` over an in-memory matrix),
:mod:`.corpus_embeddings` (streamed, cached corpus embeddings for corpora larger than memory),
:mod:`.metrics` (nDCG / recall / MRR over qrels; pure).
"""

from __future__ import annotations

__all__: list[str] = []
