"""Typed configs of the two training stages: fine-tuning on FRet (+ a mixture) and pre-finetuning.

Both share the trainer settings (batch, schedule, Matryoshka dims, checkpoints); each adds its own data
settings. Unknown keys are rejected (``extra="forbid"``) like every other stage config, and each field's
description doubles as CLI help.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gecko_distill.embedding.formats import InputMode, native_mode
from gecko_distill.embedding.loader import embedding_width, resolve_embedder_path
from gecko_distill.stage_configs import CorpusConfig, StrictModel

__all__ = [
    "STANDARD_DIMS",
    "MixSource",
    "PrefinetuneConfig",
    "TrainerSettings",
    "TrainingConfig",
    "default_matryoshka_dims",
    "parse_mix_spec",
]

#: Standard Matryoshka widths; the default dims are the model's full width plus those below it.
STANDARD_DIMS = (1024, 768, 512, 256, 128, 64)


def default_matryoshka_dims(full_dim: int) -> list[int]:
    """``[full] + standard widths below it``: all-MiniLM-L6-v2 (384) gives ``[384, 256, 128, 64]``."""
    return [full_dim] + [d for d in STANDARD_DIMS if d < full_dim]


class MixSource(StrictModel):
    """One extra training source mixed with FRet (pairs, triplets, NLI or classification JSONL)."""

    path: str = Field(..., description="JSONL file.")
    weight: float = Field(1.0, gt=0, description="Relative sampling weight (per batch).")
    kind: Literal["auto", "pairs", "nli", "classification"] = Field(
        "auto", description="Row schema; 'auto' detects it from the first row's keys. 'pairs' also takes "
        "triplets (an optional 'negative').")
    task: str | None = Field(None, description="Task string for rows without a 'task' field (default per "
                             "kind: pairs 'search result', nli 'semantic similarity', classification "
                             "'classification').")
    symmetric: bool | None = Field(None, description="Format both sides as queries (default: True for nli "
                                   "and classification, per-row 'symmetric'/'task_type' for pairs).")


def parse_mix_spec(spec: str) -> MixSource:
    """Parse the CLI form ``PATH[:weight]`` (``data/nli.jsonl:0.5``)."""
    m = re.fullmatch(r"(.+?):([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)", spec)
    if m:
        return MixSource(path=m.group(1), weight=float(m.group(2)))
    return MixSource(path=spec)


class TrainerSettings(StrictModel):
    """Settings shared by both training stages."""

    base_model: str = Field("all-MiniLM-L6-v2", description="Model to start from: 'all-MiniLM-L6-v2' "
                            "(packaged), a local sentence-transformers folder or a hub name.")
    max_seq_length: int | None = Field(256, ge=8, description="Truncate inputs to this many tokens.")
    temperature: float = Field(0.05, gt=0, description="Softmax temperature tau of the Gecko loss "
                               "(logits are cosine / tau).")
    matryoshka_dims: list[int] | None = Field(
        None, description="Matryoshka dims; None = the full dim plus the standard widths below it "
        "(1024/768/512/256/128/64; MiniLM-L6: 384, 256, 128, 64); [] = no Matryoshka.")
    matryoshka_weights: list[float] | None = Field(None, description="One weight per dim (default 1 each).")
    mini_batch_size: int | None = Field(
        None, ge=1, description="GradCache: embed and back-propagate this many rows at a time "
        "(CachedGeckoLoss) so the batch can grow without growing activation memory. None = plain loss.")
    input_format: Literal["auto", "unified", "plain", "none"] = Field(
        "auto", description="What the student reads: 'unified' (Gecko's 'task: … | query: …' / "
        "'title: … | text: …'), 'plain' (task and text concatenated, the paper's format ablation), 'none' (raw "
        "text, no prompts saved), or 'auto' (default): the base model's own format -- raw text for an "
        "off-the-shelf model, the recorded format for a gecko-distill model. A few thousand rows cannot teach "
        "a small model a new prompt format without costing it elsewhere (docs/headline.md).")
    batch_size: int = Field(32, ge=2, description="Rows per batch (in-batch negatives grow with it).")
    epochs: float = Field(1.0, gt=0, description="Passes over the training data.")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (overrides epochs if > 0).")
    learning_rate: float = Field(2e-5, gt=0, description="Peak learning rate (AdamW).")
    warmup_ratio: float = Field(0.1, ge=0, le=1, description="Linear warm-up, as a fraction of all steps.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "linear", description="Learning-rate schedule after warm-up.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping.")
    precision: Literal["fp32", "fp16", "bf16"] = Field("fp32", description="Mixed precision (GPU only).")
    seed: int = Field(0, description="Seed for shuffling, sampling and initialisation.")
    logging_steps: int = Field(1, ge=1, description="Write the loss to train_log.jsonl every N steps.")
    save_steps: int = Field(500, ge=1, description="Checkpoint every N steps (for resume).")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept on disk.")
    keep_checkpoints: bool = Field(False, description="Keep MODEL_DIR/checkpoints after a finished run.")
    resume: bool = Field(True, description="Resume from the latest checkpoint in MODEL_DIR/checkpoints.")
    device: str | None = Field(None, description="Device ('cpu', 'cuda'); default: the trainer's choice.")
    show_progress: bool = Field(True, description="Progress bar while training.")

    @model_validator(mode="before")
    @classmethod
    def _legacy_unified(cls, data: object) -> object:
        # `unified_format = true/false` (before input_format existed) still loads.
        if isinstance(data, dict) and "unified_format" in data:
            data = dict(data)
            flag = data.pop("unified_format")
            if flag is not None:
                data.setdefault("input_format", "unified" if flag else "plain")
        return data

    @property
    def unified_format(self) -> bool:
        return self.input_format == "unified"

    def resolved_input_format(self) -> InputMode:
        """``input_format`` with 'auto' resolved to the base model's own format (raw text for a model that
        gecko-distill did not train, its recorded format for one it did)."""
        if self.input_format != "auto":
            return self.input_format
        return native_mode(resolve_embedder_path(self.base_model))

    @field_validator("matryoshka_dims")
    @classmethod
    def _dims(cls, v: list[int] | None) -> list[int] | None:
        if v is not None:
            if any(d <= 0 for d in v):
                raise ValueError(f"matryoshka_dims must be positive, got {v}")
            if len(set(v)) != len(v):
                raise ValueError(f"matryoshka_dims has duplicates: {v}")
        return v

    @model_validator(mode="after")
    def _weights(self) -> TrainerSettings:
        w, d = self.matryoshka_weights, self.matryoshka_dims
        if w is not None and (d is None or len(w) != len(d)):
            raise ValueError("matryoshka_weights needs matryoshka_dims of the same length "
                             f"(got {len(w)} weights for dims {d})")
        if self.mini_batch_size is not None and self.mini_batch_size > self.batch_size:
            raise ValueError(f"mini_batch_size ({self.mini_batch_size}) must be <= batch_size "
                             f"({self.batch_size})")
        if d:  # checked against the base model's config files now, not after the data is built
            width = embedding_width(self.base_model)
            too_big = [x for x in d if width is not None and x > width]
            if too_big:
                raise ValueError(f"matryoshka_dims {too_big} exceed the embedding dimension {width} of "
                                 f"base_model {self.base_model!r}; use dims <= {width}")
        return self


class TrainingConfig(TrainerSettings):
    """Fine-tuning (paper §3.3): eq. 3 + Matryoshka on FRet, optionally mixed with other sources."""

    LATER_FIELDS = ("hard_negatives", "merge_with", "soup_seeds")

    same_tower: bool = Field(True, description="Put the other in-batch queries in each query's denominator "
                             "(same-tower negatives, eq. 3).")
    fret_weight: float = Field(1.0, gt=0, description="Sampling weight of the FRet source in a mixture.")
    fret_task_sampling: Literal["natural", "uniform"] = Field(
        "natural", description="'uniform' upsamples FRet task types to equal counts (paper Table 4); "
        "'natural' keeps the rows as generated (generation already samples task types uniformly).")
    use_negatives: bool = Field(True, description="Use FRet's hard negatives; False trains on "
                                "(query, positive) pairs (the paper's 'none' ablation).")
    hard_negatives: int = Field(
        1, ge=1, description="Own hard negatives per FRet row in eq. 3: 1 = the row's selected negative "
        "(the paper); k > 1 adds the row's next-lowest-ranked candidates (fused order, never the "
        "positive), so each query also pushes away the harder neighbours it was mined with. Rows with "
        "fewer candidates are dropped.")
    mix: list[MixSource] = Field(default_factory=list, description="Extra sources mixed with FRet.")
    # Distillation of the LLM's scores over each row's N candidates (training/distill.py). GPL and Tamber et al.
    # find that the teacher's scores, not hard 0/1 labels, are what lift a strong embedder on a new domain.
    distill: Literal["auto", "none", "listwise", "margin_mse"] = Field(
        "none", description="'listwise': KL between a tempered softmax of the teacher's scores over each row's "
        "candidates and the student's softmax over the same candidates; 'margin_mse': GPL's MarginMSE between "
        "the teacher's top candidate and each other one; 'none' (default): eq. 3 alone -- with the packaged "
        "270M LLM as teacher, distillation did not beat it (docs/headline.md); 'auto': listwise when the FRet "
        "rows carry scored candidates with their texts, else none.")
    distill_signals: dict[str, float] = Field(
        default_factory=lambda: {"ql": 1.0}, description="Teacher = weighted sum of per-row z-scored candidate "
        "scores: 'ql', 'rc', 'fused' (what mining stored) and 'retriever' (the seed embedder's cosine).")
    distill_candidates: int | None = Field(None, ge=2, description="Distil over at most this many of each row's "
                                           "candidates: the teacher's top half plus evenly spaced ranks below "
                                           "(each candidate is one more text to embed per row; on a CPU 4-5 keep "
                                           "training affordable). None = all.")
    teacher_temperature: float = Field(1.0, gt=0, description="Divides the (z-scored) teacher scores before "
                                       "the softmax: lower = peakier target.")
    distill_weight: float = Field(1.0, ge=0, description="Weight of the distillation term.")
    contrastive_weight: float = Field(1.0, ge=0, description="Weight of eq. 3 (in-batch + hard negative) when "
                                      "distilling; 0 = distillation alone.")
    base_weight: float = Field(0.0, ge=0, description="Keep what the base knows: weight of 1 - cos(student, "
                               "frozen base) on every text of the batch (queries and candidate passages). "
                               "0 = off.")
    merge_base: float = Field(0.0, ge=0, lt=1, description="After training, average the weights with the base "
                              "model's: theta = (1 - a) * trained + a * base (WiSE-FT). Keeps general skills at a "
                              "fraction of the in-domain gain; 0 = off.")
    merge_with: str | None = Field(None, description="The model merge_base averages with (unset: base_model, "
                                   "WiSE-FT). Another model fine-tuned from the same base makes a model "
                                   "soup; a run's [prefinetune] combine = 'average' sets it to "
                                   "OUT/prefinetune.")
    soup_seeds: int = Field(1, ge=1, description="Train this many times, with seeds seed, seed + 1, …, and "
                            "average the weights (a model soup of seeds; merge_base then applies to the average). "
                            "Costs that many trainings, no more data; 1 = one training.")
    round_trip_k: int | None = Field(None, ge=1, description="Train only on rows whose seed passage the mining "
                                     "retriever ranked in its top-k (round-trip consistency, post hoc).")
    corpus: str | None = Field(None, description="Corpus the FRet set was mined from: candidate texts for "
                               "distillation or extra hard negatives from FRet sets that predate stored "
                               "candidate texts.")

    @model_validator(mode="after")
    def _distill_terms(self) -> TrainingConfig:
        if self.distill not in ("none", "auto") and not self.distill_signals:
            raise ValueError("distill needs at least one entry in distill_signals, e.g. {ql = 1.0}")
        if self.distill not in ("none", "auto") and self.distill_weight == 0 and self.contrastive_weight == 0:
            raise ValueError("distill_weight and contrastive_weight are both 0: nothing to train")
        if self.merge_with is not None and self.merge_base == 0:
            raise ValueError(f"merge_with = {self.merge_with!r} needs merge_base > 0 (the weight of that "
                             "model, e.g. 0.5)")
        if self.hard_negatives > 1 and not self.use_negatives:
            raise ValueError(f"hard_negatives = {self.hard_negatives} needs use_negatives = true")
        return self


class PrefinetuneConfig(TrainerSettings):
    """Pre-finetuning (paper §3.1): self-supervised pairs from a corpus, in-batch negatives only (eq. 2)."""

    corpus: CorpusConfig = Field(default_factory=CorpusConfig, description="The corpus the pairs come from "
                                 "(`gecko-distill prefinetune`; in a run, the run's [corpus] and not this table).")
    pair_mode: Literal["auto", "title_body", "first_sentence", "inverse_cloze"] = Field(
        "auto", description="'title_body' = (title, text); 'first_sentence' = (first sentence, rest); "
        "'auto' = title-body where a title exists, else first sentence-rest; 'inverse_cloze' = (a random "
        "sentence, the passage without it, with its title): needs no titles.")
    task: str = Field("search result", description="Dataset-level task string prepended to every query.")
    min_words: int = Field(3, ge=1, description="Skip pairs whose query or document has fewer words.")
    max_pairs: int | None = Field(None, ge=1, description="Use at most this many pairs.")
    combine: Literal["sequential", "average"] = Field(
        "sequential", description="In a run: 'sequential' (the paper) fine-tunes the pre-finetuned model; "
        "'average' fine-tunes the base and averages the result with the pre-finetuned model, half each (a "
        "model soup: training.merge_with).")
