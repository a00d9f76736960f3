"""The LLM as a labeller: score (query, candidate) pairs, fuse the rankings, check the labeller.

Modules: :mod:`.scoring` (query likelihood and relevance classification), :mod:`.fusion` (reciprocal-rank
fusion; pure), :mod:`.auto_fusion` (``fusion = "auto"``: each signal against the retriever),
:mod:`.rerank_check` (the LLM as a re-ranker on labelled data: ``check-labeller``, ``rerank-eval``).
"""

from __future__ import annotations

__all__: list[str] = []
