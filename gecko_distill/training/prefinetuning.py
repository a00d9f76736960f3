"""Pre-finetuning (paper §3.1): self-supervised pairs from a corpus, trained with in-batch negatives only.

The paper pre-finetunes on community-QA pairs and web title–body pairs with eq. 2: query i against every
in-batch passage, no hard negatives and no same-tower term. We build such pairs from the user's own corpus:

- ``title_body``: (title, text), the first passage per title only, since several passages sharing one
  title would give one query several positives (in-batch false negatives);
- ``first_sentence``: (first sentence, rest of the passage);
- ``auto``: title–body where a title is new, else first sentence–rest;
- ``inverse_cloze``: (a random sentence, the passage without it, its title kept): the inverse cloze task of
  Lee et al. 2019 (ORQA). It needs no titles, so it works on any corpus of multi-sentence passages, and its
  queries are statements from anywhere in a passage, not only its opening. The sentence is removed (ORQA keeps
  it 10% of the time; we never do) so that the pair cannot be matched by copying words, and the title stays
  because evaluation sees the title with the text. Measured on SciFact and NFCorpus it does not help
  all-MiniLM-L6-v2 at full width (docs/headline.md, "The inverse cloze task").

A dataset-level task string is prepended to every query (``task: search result | query: …``), passages get
the document format. The loss is :class:`GeckoLoss` with ``same_tower=False`` on pairs, which is exactly
eq. 2, wrapped in Matryoshka like fine-tuning. The stage is optional ([ours]: off by default, because the
default base model is already contrastively trained).
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gecko_distill.embedding.formats import format_document, format_query
from gecko_distill.embedding.loader import load_embedder
from gecko_distill.errors import InputError
from gecko_distill.training.config import PrefinetuneConfig
from gecko_distill.training.data import TrainingData
from gecko_distill.training.loop import (
    TrainResult,
    build_loss,
    is_finished,
    recorded_dims,
    run_trainer,
    stage_fingerprint,
)

if TYPE_CHECKING:
    from transformers import TrainerCallback

    from gecko_distill.records import Passage

__all__ = ["prefinetune", "self_supervised_pairs", "split_first_sentence", "split_sentences"]

logger = logging.getLogger(__name__)

# A sentence ends at . ! ? (followed by a space) or at CJK full stops (often not followed by one).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")


def split_first_sentence(text: str) -> tuple[str, str]:
    """``(first sentence, rest)``; ``rest`` is empty when the text is one sentence."""
    parts = _SENTENCE_END.split(text.strip(), maxsplit=1)
    first = parts[0].strip()
    rest = parts[1].strip() if len(parts) > 1 else ""
    return first, rest


def split_sentences(text: str) -> list[str]:
    """Every sentence of ``text``, stripped, empty ones dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def _inverse_cloze(text: str, rng: random.Random, min_words: int) -> tuple[str, str]:
    """``(one sentence, the others joined)``, the sentence drawn among those of at least ``min_words`` words
    (any, if none is that long); ``(text, "")`` for a single sentence, which the caller skips."""
    sentences = split_sentences(text)
    if len(sentences) < 2:
        return text.strip(), ""
    eligible = [i for i, s in enumerate(sentences) if _n_words(s) >= min_words] or list(range(len(sentences)))
    i = rng.choice(eligible)
    return sentences[i], " ".join(sentences[:i] + sentences[i + 1:])


def _n_words(text: str) -> int:
    words = len(text.split())
    # Scripts without spaces (CJK, Thai): count ~3 characters as a word.
    return max(words, len(text) // 3) if words <= 2 else words


def self_supervised_pairs(
    passages: Iterable[Passage], *, mode: str = "auto", min_words: int = 3, max_pairs: int | None = None,
    seed: int = 0,
) -> tuple[list[tuple[str, str, str]], Counter[str]]:
    """(query, document, document title) triples from passages, and a counter of skipped passages by reason.
    The title is empty except in ``inverse_cloze`` mode (elsewhere the title is the query or absent)."""
    pairs: list[tuple[str, str, str]] = []
    skipped: Counter[str] = Counter()
    seen_titles: set[str] = set()
    rng = random.Random(seed)
    for p in passages:
        title = (p.title or "").strip()
        doc_title = ""
        use_title = mode == "title_body" or (mode == "auto" and title and title not in seen_titles)
        if mode == "inverse_cloze":
            q, d = _inverse_cloze(p.text, rng, min_words)
            doc_title = title
        elif use_title:
            if not title:
                skipped["no_title"] += 1
                continue
            if title in seen_titles:
                skipped["repeated_title"] += 1
                continue
            seen_titles.add(title)
            q, d = title, p.text.strip()
        else:
            q, d = split_first_sentence(p.text)
        if not d:
            skipped["single_sentence"] += 1
            continue
        if _n_words(q) < min_words or _n_words(d) < min_words:
            skipped["too_short"] += 1
            continue
        pairs.append((q, d, doc_title))
    if max_pairs is not None and len(pairs) > max_pairs:
        pairs = random.Random(seed).sample(pairs, max_pairs)
    return pairs, skipped


def prefinetune(
    out_dir: str | Path,
    *,
    config: PrefinetuneConfig | None = None,
    passages: Sequence[Passage] | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainResult:
    """Pre-finetune ``config.base_model`` on pairs from ``passages`` (default: read ``config.corpus``).

    The output directory is a model like :func:`gecko_distill.training.train` writes; pass it as
    ``TrainingConfig.base_model`` to fine-tune from it.
    """
    from datasets import Dataset

    config = config or PrefinetuneConfig()
    if passages is None:
        from gecko_distill.corpus import read_corpus

        passages, _ = read_corpus(config.corpus)
    pairs, skipped = self_supervised_pairs(passages, mode=config.pair_mode, min_words=config.min_words,
                                           max_pairs=config.max_pairs, seed=config.seed)
    if len(pairs) < 2:
        raise InputError(f"only {len(pairs)} self-supervised pair(s) from {len(passages)} passages "
                         f"(skipped: {dict(skipped)}); in-batch negatives need more. Try pair_mode="
                         "'first_sentence' or a larger corpus.")
    mode = config.resolved_input_format()
    cols = {"anchor": [format_query(config.task, q, mode=mode) for q, _, _ in pairs],
            "positive": [format_document(d, t or None, mode=mode) for _, d, t in pairs]}
    data = TrainingData(datasets={"pairs": Dataset.from_dict(cols)}, weights={"pairs": 1.0},
                        summary={"sources": {"pairs": {"rows": len(pairs), "passages": len(passages),
                                                       "dropped": dict(skipped)}}})
    # the title joins the digest only where there is one (title_body and first_sentence digests unchanged)
    text = "\n".join("\t".join(p if p[2] else p[:2]) for p in pairs)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    dump = config.model_dump(mode="json")
    # `combine` decides what a run does with this model afterwards, not its weights
    fp = stage_fingerprint({k: v for k, v in dump.items() if k != "combine"}, {"pairs": digest})
    out = Path(out_dir)
    if is_finished(out, fp):
        logger.info("%s already holds a finished pre-finetuning run; skipping", out)
        return TrainResult(model_dir=out, steps=0, rows=len(pairs), matryoshka_dims=recorded_dims(out),
                           first_loss=None,
                           last_loss=None, elapsed_s=0.0, skipped=True)
    model = load_embedder(config.base_model, device=config.device, max_seq_length=config.max_seq_length)
    # Eq. 2: in-batch positives only, so no same-tower term (and pairs carry no hard negative).
    loss, dims = build_loss(model, config, same_tower=False)
    logger.info("pre-finetuning %s on %d pairs (skipped %s)", config.base_model, len(pairs), dict(skipped))
    return run_trainer(model=model, data=data, settings=config, loss=loss, dims=dims, out_dir=out, fp=fp,
                       stage="prefinetune", config_dump=dump, callbacks=callbacks, same_tower=False,
                       input_format=mode)
