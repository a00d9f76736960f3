"""The training loop: a thin wrapper over sentence-transformers' ``SentenceTransformerTrainer``.

What it adds to the trainer, and why:

- the loss stack ``MatryoshkaLoss(GeckoLoss | CachedGeckoLoss)`` built from the config;
- no duplicate texts within a batch (``BatchSamplers.NO_DUPLICATES``): FRet positives collide after
  relabelling, and a duplicate in the batch is a false negative in eq. 3;
- per-source weights for mixtures (:mod:`gecko_distill.training.sampling`);
- ``MODEL_DIR/checkpoints`` and resume from the latest one; ``MODEL_DIR/train_log.jsonl`` (step, loss)
  for the report, truncated to the checkpoint's step on resume so no step is logged twice;
- the stage-directory contract: model files, ``gecko_distill.json``, ``train_config.json``, then
  ``manifest.json`` last; a finished directory with the same fingerprint is skipped.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from gecko_distill.artifacts import atomic_write_text, fingerprint, read_jsonl
from gecko_distill.errors import ConfigError
from gecko_distill.training.config import default_matryoshka_dims
from gecko_distill.training.losses import CachedGeckoLoss, GeckoLoss
from gecko_distill.training.model_info import ModelInfo, default_prompts, write_model_info

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from torch import nn

    from gecko_distill.training.config import TrainerSettings
    from gecko_distill.training.data import TrainingData

__all__ = ["LossLogCallback", "TrainResult", "build_loss", "is_finished", "recorded_dims", "run_trainer",
           "stage_fingerprint"]

logger = logging.getLogger(__name__)

TRAIN_LOG = "train_log.jsonl"
TRAIN_CONFIG = "train_config.json"
CHECKPOINTS = "checkpoints"
_MARKER = ".fingerprint"


@dataclass(frozen=True)
class TrainResult:
    """What a training stage produced."""

    model_dir: Path
    steps: int
    rows: int
    matryoshka_dims: list[int]
    first_loss: float | None
    last_loss: float | None
    elapsed_s: float
    skipped: bool = False


def build_loss(model: SentenceTransformer, settings: TrainerSettings, *,
               same_tower: bool, n_contrastive: int = 3, distill: str | None = None) -> tuple[nn.Module, list[int]]:
    """``MatryoshkaLoss(GeckoLoss | CachedGeckoLoss | DistillLoss)`` and the dims it trains (``[]`` = none).

    ``DistillLoss`` when the settings distil candidate scores or anchor to the base; ``n_contrastive`` is the
    number of eq. 3 columns in the data (2 without hard negatives, 3 with).
    """
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss

    # `distill` is the resolved mode ('auto' is decided by the data: training/data.py resolve_distill)
    distill = distill or getattr(settings, "distill", "none")
    if distill == "auto":
        distill = "none"
    base_weight = getattr(settings, "base_weight", 0.0)
    if distill != "none" or base_weight > 0:
        from gecko_distill.training.distill import DistillLoss

        if settings.mini_batch_size is not None:
            raise ConfigError("distillation and base_weight do not run under GradCache (mini_batch_size); "
                              "unset mini_batch_size or lower batch_size")
        base: nn.Module = DistillLoss.with_frozen_base(
            model, n_contrastive=n_contrastive, mode=distill if distill != "none" else "listwise",
            temperature=settings.temperature, teacher_temperature=settings.teacher_temperature,
            distill_weight=settings.distill_weight if distill != "none" else 0.0,
            contrastive_weight=settings.contrastive_weight if distill != "none" else 1.0,
            same_tower=same_tower, base_weight=base_weight)
    elif settings.mini_batch_size is not None:
        base = CachedGeckoLoss(model, temperature=settings.temperature, same_tower=same_tower,
                                          mini_batch_size=settings.mini_batch_size)
    else:
        base = GeckoLoss(model, temperature=settings.temperature, same_tower=same_tower)
    full = model.get_embedding_dimension()
    dims = (default_matryoshka_dims(full) if settings.matryoshka_dims is None
            else list(settings.matryoshka_dims))
    if not dims:
        return base, []
    too_big = [d for d in dims if d > full]
    if too_big:
        raise ConfigError(f"matryoshka_dims {too_big} exceed the model's embedding dimension {full}; "
                          f"use dims <= {full}")
    if full not in dims:
        logger.warning("matryoshka_dims %s omit the model's full dimension %d: the untruncated embedding is "
                       "not trained and may degrade; add %d to matryoshka_dims", dims, full, full)
    loss = MatryoshkaLoss(model, base, matryoshka_dims=dims, matryoshka_weights=settings.matryoshka_weights)
    return loss, sorted(dims, reverse=True)


class LossLogCallback(TrainerCallback):
    """Append ``{"step", "epoch", "loss", "learning_rate", "grad_norm"}`` per logging step to a JSONL file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
               **kwargs: Any) -> None:
        if not logs or "loss" not in logs or not state.is_world_process_zero:
            return
        row = {"step": state.global_step, "epoch": logs.get("epoch"), "loss": float(logs["loss"]),
               "learning_rate": logs.get("learning_rate"), "grad_norm": logs.get("grad_norm")}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


def finished_fingerprint(out_dir: Path) -> str | None:
    """The fingerprint of a finished stage directory (manifest written last); None without a readable one."""
    m = Path(out_dir) / "manifest.json"
    if not m.is_file():
        return None
    try:
        return json.loads(m.read_text(encoding="utf-8")).get("fingerprint")
    except json.JSONDecodeError:
        return None


def is_finished(out_dir: Path, fp: str) -> bool:
    """A finished stage directory (manifest written last) for the same fingerprint."""
    return finished_fingerprint(out_dir) == fp


def recorded_dims(out_dir: Path) -> list[int]:
    """The Matryoshka dims a finished model directory records (``[]`` if it records none)."""
    from gecko_distill.training.model_info import read_model_info

    info = read_model_info(out_dir)
    return list(info.matryoshka_dims) if info else []


def _prepare_dir(out_dir: Path, fp: str) -> None:
    """Start or resume ``out_dir`` for fingerprint ``fp``; checkpoints of another config are removed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    marker = out_dir / _MARKER
    old = marker.read_text().strip() if marker.exists() else None
    if old is not None and old != fp:
        logger.warning("%s: config or data changed since the last run; starting training afresh", out_dir)
        shutil.rmtree(out_dir / CHECKPOINTS, ignore_errors=True)
        (out_dir / TRAIN_LOG).unlink(missing_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)
    atomic_write_text(marker, fp + "\n")


def _latest_checkpoint(ckpt_dir: Path) -> tuple[str | None, int]:
    from transformers.trainer_utils import get_last_checkpoint

    if not ckpt_dir.is_dir():
        return None, 0
    last = get_last_checkpoint(str(ckpt_dir))
    if last is None:
        return None, 0
    state = Path(last) / "trainer_state.json"
    step = json.loads(state.read_text())["global_step"] if state.is_file() else 0
    return last, int(step)


def _truncate_log(path: Path, step: int) -> None:
    """Keep the log rows up to the resumed checkpoint's step; later ones will be recomputed."""
    if not path.exists():
        return
    keep = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))


def eq3_columns(column_names: Sequence[str]) -> list[str]:
    """The columns eq. 3 reads, in order: anchor, positive, then the own hard negatives (negative, negative_2 …).

    Distillation's candidate columns (``cand_*``) and anything else are not eq. 3's.
    """
    return [c for c in column_names if c in ("anchor", "positive", "negative") or c.startswith("negative_")]


def contrastive_no_duplicates(dataset: Any, **kwargs: Any) -> Any:
    """sentence-transformers' NO_DUPLICATES sampler, judged on the in-batch columns only.

    A duplicate among anchors/positives/negatives is a false in-batch negative, so those must be unique in a
    batch. Distillation's candidate columns and the extra hard negatives (``negative_2 …``) need not be:
    each row's are compared with its own query only, and rows retrieved for neighbouring queries share
    candidates, which would otherwise starve batches.
    """
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

    cols = [c for c in dataset.column_names if not c.startswith(("cand_", "negative_"))]
    return NoDuplicatesBatchSampler(dataset.select_columns(cols), **kwargs)


def _training_args(settings: TrainerSettings, ckpt_dir: Path, multi_weights: Sequence[float] | None) -> Any:
    import torch
    from sentence_transformers import SentenceTransformerTrainingArguments

    from gecko_distill.training.sampling import weighted_sampler_factory

    kwargs: dict[str, Any] = {}
    if multi_weights is not None:
        kwargs["multi_dataset_batch_sampler"] = weighted_sampler_factory(multi_weights)
    return SentenceTransformerTrainingArguments(
        output_dir=str(ckpt_dir),
        per_device_train_batch_size=settings.batch_size,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        learning_rate=settings.learning_rate,
        warmup_steps=settings.warmup_ratio,  # transformers 5: a float < 1 is a ratio of all steps
        weight_decay=settings.weight_decay,
        lr_scheduler_type=settings.lr_scheduler,
        max_grad_norm=settings.max_grad_norm,
        fp16=settings.precision == "fp16",
        bf16=settings.precision == "bf16",
        seed=settings.seed,
        data_seed=settings.seed,
        batch_sampler=contrastive_no_duplicates,
        logging_steps=settings.logging_steps,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        report_to="none",
        disable_tqdm=not settings.show_progress,
        use_cpu=settings.device == "cpu",
        dataloader_drop_last=False,
        dataloader_pin_memory=torch.cuda.is_available(),
        **kwargs,
    )


def run_trainer(
    *,
    model: SentenceTransformer,
    data: TrainingData,
    settings: TrainerSettings,
    loss: nn.Module,
    dims: list[int],
    out_dir: Path,
    fp: str,
    stage: str,
    config_dump: dict[str, Any],
    callbacks: Sequence[TrainerCallback] = (),
    same_tower: bool = True,
    input_format: str | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` with ``loss`` and write the finished model directory ``out_dir``."""
    from datasets import DatasetDict
    from sentence_transformers import SentenceTransformerTrainer

    started = time.time()
    _prepare_dir(out_dir, fp)
    ckpt_dir = out_dir / CHECKPOINTS
    log_path = out_dir / TRAIN_LOG
    last, last_step = _latest_checkpoint(ckpt_dir) if settings.resume else (None, 0)
    if last is not None:
        logger.info("resuming from %s (step %d)", last, last_step)
        _truncate_log(log_path, last_step)
    else:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        log_path.unlink(missing_ok=True)

    names = list(data.datasets)
    multi = len(names) > 1
    train_dataset: Any = DatasetDict(data.datasets) if multi else data.datasets[names[0]]
    args = _training_args(settings, ckpt_dir, [data.weights[n] for n in names] if multi else None)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_dataset, loss=loss,
                                         callbacks=[LossLogCallback(log_path), *callbacks])
    trainer.train(resume_from_checkpoint=last)
    log = read_jsonl(log_path) if log_path.exists() else []
    result = TrainResult(model_dir=out_dir, steps=int(trainer.state.global_step), rows=data.num_rows,
                         matryoshka_dims=dims or [model.get_embedding_dimension()],
                         first_loss=log[0]["loss"] if log else None,
                         last_loss=log[-1]["loss"] if log else None,
                         elapsed_s=round(time.time() - started, 2))
    if not trainer.is_world_process_zero():
        return result  # multi-process (torchrun) training: only rank 0 writes the model directory

    _merge_as_configured(model, settings)
    # The saved model carries Gecko's formats as named prompts: encode_query / encode_document pick up
    # "query" / "document", and each Table 9 task string is a prompt name of its own.
    fmt = input_format or ("unified" if settings.input_format == "auto" else settings.input_format)
    prompts = default_prompts(mode=fmt)  # type: ignore[arg-type]
    model.prompts = prompts
    model.default_prompt_name = None
    model.save_pretrained(str(out_dir))
    info = ModelInfo(matryoshka_dims=result.matryoshka_dims,
                     embedding_dim=model.get_embedding_dimension(), unified_format=fmt == "unified",
                     input_format=fmt,
                     stage=stage, base_model=settings.base_model, prompts=prompts,
                     loss={"name": type(loss).__name__, "base_loss": type(getattr(loss, "loss", loss)).__name__,
                           "temperature": settings.temperature,
                           **(loss.loss.get_config_dict() if hasattr(loss, "loss") else {}),
                           "same_tower": same_tower, "mini_batch_size": settings.mini_batch_size,
                           "matryoshka_weights": settings.matryoshka_weights})
    write_model_info(out_dir, info)
    # Not "config.json": that name belongs to the transformer's own config inside a model directory.
    atomic_write_text(out_dir / TRAIN_CONFIG, json.dumps(config_dump, indent=2, ensure_ascii=False))
    if not settings.keep_checkpoints:
        shutil.rmtree(ckpt_dir, ignore_errors=True)

    result = replace(result, elapsed_s=round(time.time() - started, 2))
    _write_manifest(out_dir, result, fp=fp, stage=stage, data=data)
    return result


def _write_manifest(out_dir: Path, result: TrainResult, *, fp: str, stage: str, data: TrainingData) -> None:
    from gecko_distill import __version__
    from gecko_distill.training.model_card import write_model_card

    summary = {"steps": result.steps, "first_loss": result.first_loss, "last_loss": result.last_loss,
               "matryoshka_dims": result.matryoshka_dims, **data.summary}
    write_model_card(out_dir, summary=summary)  # README.md: the hub model card, before the manifest
    manifest = {
        "stage": stage,
        "fingerprint": fp,
        "gecko_distill_version": __version__,
        "rows": result.rows,
        "files": sorted(p.name for p in out_dir.iterdir() if p.name not in ("manifest.json", _MARKER)),
        "summary": summary,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "elapsed_s": result.elapsed_s,
    }
    atomic_write_text(out_dir / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))


def mergeable_weights(model: SentenceTransformer, other: str) -> dict[str, Any]:
    """``other``'s floating-point weights, keyed as ``model``'s; raises unless every one has a counterpart of
    the same shape (averaging only some layers would give a model neither side trained). ``train`` calls it
    before training too, so a wrong ``merge_with`` fails before the hours, not after."""
    from gecko_distill.embedding.loader import load_embedder

    theirs = load_embedder(other, device="cpu").state_dict()
    own = {n: p for n, p in model.state_dict().items() if p.dtype.is_floating_point}
    unmatched = [n for n, p in own.items() if n not in theirs or theirs[n].shape != p.shape]
    if unmatched:
        raise ConfigError(f"cannot average the trained weights with {other}: {len(unmatched)} of {len(own)} "
                          f"weights have no counterpart of the same shape there (first: {unmatched[0]}); "
                          "merge with a model of the same architecture, fine-tuned from the same base")
    return {n: theirs[n] for n in own}


def merge_weights(model: SentenceTransformer, base_model: str, alpha: float) -> None:
    """WiSE-FT (Wortsman et al. 2022): ``theta = (1 - alpha) * trained + alpha * base``, in place.

    Fine-tuned and starting weights lie in one low-loss basin, so their average keeps most of the in-domain
    gain and most of what the base did well elsewhere; it costs one pass over the weights. ``base_model`` may
    also be another model fine-tuned from the same start (a model soup, Wortsman et al. 2022): both
    fine-tunings' displacements are kept, at weights 1 - alpha and alpha, with no second training pass.
    """
    import torch

    own = dict(model.state_dict())
    with torch.no_grad():
        for name, w in mergeable_weights(model, base_model).items():
            own[name].copy_((1 - alpha) * own[name] + alpha * w.to(own[name].device, own[name].dtype))


def _merge_as_configured(model: SentenceTransformer, settings: TrainerSettings) -> None:
    """``merge_base`` of the settings (fine-tuning only; pre-finetuning has none): WiSE-FT with the base, or a
    soup with ``merge_with``."""
    alpha = getattr(settings, "merge_base", 0.0)
    if alpha > 0:
        merge_weights(model, getattr(settings, "merge_with", None) or settings.base_model, alpha)


def write_soup(members: Sequence[TrainResult], out_dir: Path, *, settings: TrainerSettings, fp: str,
               config_dump: dict[str, Any], data: TrainingData, started: float) -> TrainResult:
    """Average finished trainings of one base uniformly into ``out_dir`` (a model soup, Wortsman et al. 2022).

    The members differ only in their seed, so they start from one point and land in one basin: their mean
    keeps what they agree on and averages out what one seed's batch order happened to teach. The mean is a
    running average (after ``i`` models each weighs ``1/i``) by :func:`merge_weights`, so one member is held
    in memory besides the soup. The first member's recorded info (format, prompts, dims, loss) is the soup's.
    """
    from gecko_distill.embedding.loader import load_embedder
    from gecko_distill.training.model_info import read_model_info

    first = members[0].model_dir
    info = read_model_info(first)
    if info is None:
        raise ConfigError(f"{first} records no gecko-distill model info; a soup's members are its own "
                          "trainings")
    model = load_embedder(str(first), device="cpu", max_seq_length=settings.max_seq_length)
    for i, member in enumerate(members[1:], start=2):
        merge_weights(model, str(member.model_dir), 1 / i)
    _merge_as_configured(model, settings)  # on the soup of seeds, not on each member
    _prepare_dir(out_dir, fp)
    model.save_pretrained(str(out_dir))
    write_model_info(out_dir, info)
    atomic_write_text(out_dir / TRAIN_CONFIG, json.dumps(config_dump, indent=2, ensure_ascii=False))
    steps = sum(json.loads((m.model_dir / "manifest.json").read_text())["summary"]["steps"] for m in members)
    result = TrainResult(model_dir=out_dir, steps=steps, rows=data.num_rows,
                         matryoshka_dims=list(info.matryoshka_dims), first_loss=members[0].first_loss,
                         last_loss=members[-1].last_loss, elapsed_s=round(time.time() - started, 2))
    _write_manifest(out_dir, result, fp=fp, stage="train", data=data)
    return result


def stage_fingerprint(config_dump: dict[str, Any], inputs: dict[str, Any]) -> str:
    """Fingerprint of what determines the trained weights (not resume/progress/logging knobs)."""
    ignore = {"resume", "keep_checkpoints", "device", "show_progress", "save_steps", "save_total_limit",
              "logging_steps"}
    kept = {k: v for k, v in config_dump.items() if k not in ignore}
    return fingerprint({"config": kept, "inputs": inputs})
