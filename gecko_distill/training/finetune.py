"""Fine-tuning (paper §3.3): a FRet stage directory (+ optional mixture) → a trained model directory."""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gecko_distill.embedding.loader import load_embedder
from gecko_distill.training.config import TrainingConfig
from gecko_distill.training.data import build_training_data
from gecko_distill.training.loop import (
    TrainResult,
    build_loss,
    eq3_columns,
    finished_fingerprint,
    is_finished,
    mergeable_weights,
    recorded_dims,
    run_trainer,
    stage_fingerprint,
    write_soup,
)

if TYPE_CHECKING:
    from transformers import TrainerCallback

    from gecko_distill.training.data import TrainingData

__all__ = ["SOUP_MEMBERS", "train"]

#: Where a soup of seeds keeps its members (inside the model directory, removed once the soup is written
#: unless ``keep_checkpoints``): each is a finished training of its own, so a killed soup resumes member by
#: member.
SOUP_MEMBERS = "soup-members"

logger = logging.getLogger(__name__)


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def train(
    data: str | Path | None,
    out_dir: str | Path,
    *,
    config: TrainingConfig | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainResult:
    """Fine-tune ``config.base_model`` with eq. 3 + Matryoshka on a FRet set and write ``out_dir``.

    Args:
        data: a finished FRet stage directory (``DIR/fret``, or the run directory ``DIR``), or ``None``
            to train on ``config.mix`` sources only.
        out_dir: the model directory to write (``SentenceTransformer(out_dir)`` loads it). Checkpoints go
            to ``out_dir/checkpoints``; an interrupted run resumes from the latest one.
        config: training settings (defaults: :class:`TrainingConfig`).
        callbacks: extra ``transformers.TrainerCallback`` objects.

    Returns:
        A :class:`TrainResult`; ``skipped=True`` when ``out_dir`` already holds a finished run of the same
        config and data.
    """
    config = config or TrainingConfig()
    out = Path(out_dir)
    mode = config.resolved_input_format()
    training_data = build_training_data(data, config, mode=mode)
    dump = config.model_dump(mode="json")  # recorded in full (train_config.json, the model card)
    inputs = {"sources": {n: s.get("fingerprint") for n, s in training_data.summary["sources"].items()},
              "input_format": mode,
              "mix_files": {m.path: _file_digest(m.path) for m in config.mix}}
    # A base gecko-distill trained (e.g. a run's OUT/prefinetune) is known by its stage fingerprint: rewritten in
    # place it keeps its path, and the training on top must then not resume as finished. Other bases (packaged,
    # hub, plain folders) have none, which leaves their fingerprints as they were.
    if (base_fp := finished_fingerprint(Path(config.base_model))) is not None:
        inputs["base_model"] = base_fp
    if config.merge_with and (merge_fp := finished_fingerprint(Path(config.merge_with))) is not None:
        inputs["merge_with"] = merge_fp
    fp = stage_fingerprint(config.fingerprint_dump(mode="json"), inputs)
    if is_finished(out, fp):
        logger.info("%s already holds a finished training run with this config and data; skipping", out)
        return TrainResult(model_dir=out, steps=0, rows=training_data.num_rows,
                           matryoshka_dims=recorded_dims(out),
                           first_loss=None, last_loss=None, elapsed_s=0.0, skipped=True)

    if config.soup_seeds > 1:
        return _soup_of_seeds(data, out, config=config, fp=fp, dump=dump, training_data=training_data,
                              callbacks=callbacks)
    model = load_embedder(config.base_model, device=config.device, max_seq_length=config.max_seq_length)
    if config.merge_with:
        mergeable_weights(model, config.merge_with)  # a bad one fails now, not after the training
    n_contrastive = min(len(eq3_columns(d.column_names)) for d in training_data.datasets.values())
    loss, dims = build_loss(model, config, same_tower=config.same_tower, n_contrastive=n_contrastive,
                            distill=training_data.summary.get("distill", "none"))
    logger.info("training %s on %d rows (%s), dims %s, loss %s", config.base_model, training_data.num_rows,
                ", ".join(f"{n}={len(d)}" for n, d in training_data.datasets.items()), dims or "full only",
                type(loss).__name__)
    return run_trainer(model=model, data=training_data, settings=config, loss=loss, dims=dims, out_dir=out,
                       fp=fp, stage="train", config_dump=dump, callbacks=callbacks,
                       same_tower=config.same_tower, input_format=mode)


def _soup_of_seeds(data: str | Path | None, out: Path, *, config: TrainingConfig, fp: str,
                   dump: dict[str, Any], training_data: TrainingData,
                   callbacks: Sequence[TrainerCallback]) -> TrainResult:
    """``soup_seeds`` trainings with seeds ``seed, seed + 1, …`` (each a plain training, no merge), then
    their uniform average, then ``merge_base`` on that average."""
    started = time.time()
    if config.merge_with:
        mergeable_weights(load_embedder(config.base_model, device="cpu"), config.merge_with)  # fail early
    members = []
    for k in range(config.soup_seeds):
        seed = config.seed + k
        member = config.model_copy(update={"seed": seed, "soup_seeds": 1, "merge_base": 0.0,
                                           "merge_with": None})
        logger.info("soup of seeds: member %d of %d (seed %d)", k + 1, config.soup_seeds, seed)
        members.append(train(data, out / SOUP_MEMBERS / f"seed-{seed}", config=member, callbacks=callbacks))
    result = write_soup(members, out, settings=config, fp=fp, config_dump=dump, data=training_data,
                        started=started)
    if not config.keep_checkpoints:
        shutil.rmtree(out / SOUP_MEMBERS, ignore_errors=True)
    return result
