"""Stage 0: corpus readers, normalisation and the packaged demo corpora."""

from __future__ import annotations

from gecko_distill.corpus.demo import DEMO_CORPORA, iter_demo_corpus
from gecko_distill.corpus.normalize import dedup_key, normalize_text, truncate_words
from gecko_distill.corpus.readers import BadRow, CorpusReport, read_corpus

__all__ = ["DEMO_CORPORA", "BadRow", "CorpusReport", "dedup_key", "iter_demo_corpus", "normalize_text",
           "read_corpus", "truncate_words"]
