"""Distil the LLM's ranking of each FRet row's candidates into the student, and keep what the base knows.

Why: plain contrastive training on generated queries gains little (GPL's QGen row), and InfoNCE on
corpus-specific synthetic queries often *lowers* a strong embedder (Tamber et al., arXiv 2502.19712). What
moves the numbers is the teacher's *scores* over the candidates (GPL's MarginMSE; listwise distillation of a
reranker's ordering). Mining already scored every candidate of every row; eq. 3 alone keeps two of them.

For a row with query q, candidates c_1..c_N (the retriever's top-N, seed included) and teacher scores t_j
(per-row z-scored LLM signals, :func:`gecko_distill.training.data.teacher_scores`), s_j = cos(q, c_j) / τ:

- **listwise**: KL( softmax(t / T) ‖ softmax(s) ) over the row's N candidates (a tempered teacher);
- **margin_mse** (GPL): mean over j of ( (s_top − s_j) − (t_top − t_j) / T )², top = the teacher's argmax;
- optionally **plus eq. 3** (in-batch positives, same-tower queries, own hard negative), weighted;
- optionally **plus a base anchor**: mean of 1 − cos(student(x), base(x)) over the batch's texts x, with the
  frozen base model — the student may move where the teacher asks but is pulled back towards the base's
  geometry everywhere else, which is what STS and classification rely on.

Inputs are the dataset columns ``anchor, positive[, negative], cand_0 … cand_{N-1}`` and ``label`` = the
(B, N) teacher scores. Under ``MatryoshkaLoss`` every term is computed on the truncated embeddings (the base
model's embeddings are truncated to the same width).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers.base.losses.merged_forward import embed_columns
from torch import Tensor, nn

from gecko_distill.training.losses import _GECKO_CITATION, gecko_logits

__all__ = ["DistillLoss", "listwise_kl", "margin_mse"]


def listwise_kl(student: Tensor, teacher: Tensor, *, teacher_temperature: float = 1.0) -> Tensor:
    """Mean over rows of KL(softmax(teacher / T) ‖ softmax(student)); both ``(B, N)`` logits."""
    target = F.softmax(teacher / teacher_temperature, dim=-1)
    return F.kl_div(F.log_softmax(student, dim=-1), target, reduction="batchmean")


def margin_mse(student: Tensor, teacher: Tensor, *, teacher_temperature: float = 1.0) -> Tensor:
    """GPL's MarginMSE between the teacher's top candidate and every other candidate of the row."""
    top = teacher.argmax(dim=-1, keepdim=True)                       # (B, 1)
    s_margin = student.gather(1, top) - student                      # (B, N), 0 at top
    t_margin = (teacher.gather(1, top) - teacher) / teacher_temperature
    n_other = max(student.size(1) - 1, 1)
    return ((s_margin - t_margin) ** 2).sum(dim=-1).mean() / n_other


class DistillLoss(nn.Module):
    """Listwise (or MarginMSE) distillation of candidate scores, + eq. 3, + a frozen-base anchor.

    Args:
        model: the SentenceTransformer being trained.
        n_contrastive: how many leading columns are eq. 3's (2 = anchor, positive; 3 = + hard negative).
        mode: ``"listwise"`` or ``"margin_mse"``.
        temperature: τ of the student's logits (cos / τ), shared with eq. 3.
        teacher_temperature: T dividing the teacher scores.
        distill_weight, contrastive_weight: weights of the two terms.
        same_tower: eq. 3's same-tower negatives.
        base_model: a frozen copy of the starting model for the base anchor (``None`` = off).
        base_weight: weight of the base anchor.
    """

    def __init__(self, model: nn.Module, *, n_contrastive: int, mode: str = "listwise", temperature: float = 0.05,
                 teacher_temperature: float = 1.0, distill_weight: float = 1.0, contrastive_weight: float = 1.0,
                 same_tower: bool = True, base_model: nn.Module | None = None, base_weight: float = 0.0) -> None:
        super().__init__()
        if mode not in ("listwise", "margin_mse"):
            raise ValueError(f"mode must be 'listwise' or 'margin_mse', got {mode!r}")
        if n_contrastive < 2:
            raise ValueError("n_contrastive must be >= 2 (anchor, positive)")
        self.model = model
        self.n_contrastive = n_contrastive
        self.mode = mode
        self.temperature = temperature
        self.teacher_temperature = teacher_temperature
        self.distill_weight = distill_weight
        self.contrastive_weight = contrastive_weight
        self.same_tower = same_tower
        self.base_weight = base_weight if base_model is not None else 0.0
        # A plain attribute list, not a submodule: the frozen copy must not be saved, optimised or moved by
        # the trainer as part of the loss.
        self._base: list[nn.Module] = []
        self._ref_cache: tuple[tuple[int, ...], list[Tensor]] | None = None
        if base_model is not None and base_weight > 0:
            base = base_model.eval()
            for p in base.parameters():
                p.requires_grad_(False)
            self._base.append(base)

    @classmethod
    def with_frozen_base(cls, model: nn.Module, **kwargs: Any) -> DistillLoss:
        """Build the loss with a frozen copy of ``model`` as it is now (before training) as the base."""
        base = copy.deepcopy(model) if kwargs.get("base_weight", 0.0) > 0 else None
        return cls(model, base_model=base, **kwargs)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        features = list(sentence_features)
        if self.distill_weight > 0 and (labels is None or len(features) <= self.n_contrastive):
            raise ValueError("DistillLoss needs candidate columns (cand_0 …) and a 'label' column of teacher "
                             "scores; build the data with distill != 'none'")
        embeddings = embed_columns(self.model, features)
        loss = self.compute_loss_from_embeddings(embeddings, labels)
        if self.base_weight > 0:
            loss = loss + self.base_weight * self._base_anchor(features, embeddings)
        return loss

    def compute_loss_from_embeddings(self, embeddings: Sequence[Tensor], labels: Tensor | None) -> Tensor:
        k = self.n_contrastive
        queries = embeddings[0]
        scale = 1.0 / self.temperature
        total = queries.new_zeros(())
        if self.contrastive_weight > 0:
            logits, targets = gecko_logits(queries, embeddings[1], embeddings[2:k], scale=scale,
                                           same_tower=self.same_tower)
            total = total + self.contrastive_weight * F.cross_entropy(logits, targets)
        if self.distill_weight > 0 and labels is not None:
            q = F.normalize(queries, dim=-1)                                   # (B, d)
            cands = F.normalize(torch.stack(list(embeddings[k:]), dim=1), dim=-1)  # (B, N, d)
            student = torch.einsum("bd,bnd->bn", q, cands) * scale            # (B, N)
            teacher = labels.to(student.dtype).reshape(student.shape)
            fn = listwise_kl if self.mode == "listwise" else margin_mse
            total = total + self.distill_weight * fn(student, teacher, teacher_temperature=self.teacher_temperature)
        return total

    def _base_anchor(self, features: list[dict[str, Tensor]], embeddings: list[Tensor]) -> Tensor:
        base = self._base[0]
        if next(base.parameters()).device != embeddings[0].device:
            base.to(embeddings[0].device)
        # MatryoshkaLoss calls us once per dim with the same batch: embed it with the base only once.
        key = tuple(f["input_ids"].data_ptr() for f in features if "input_ids" in f)
        if self._ref_cache is not None and self._ref_cache[0] == key:
            ref = self._ref_cache[1]
        else:
            with torch.no_grad():
                # Fresh dicts: the student's forward wrote its outputs into `features`.
                ref = embed_columns(base, [{k: v for k, v in f.items() if k in ("input_ids", "attention_mask",
                                                                                "token_type_ids")} for f in features])
            self._ref_cache = (key, ref)
        terms = []
        for s, b in zip(embeddings, ref, strict=True):
            d = s.size(-1)  # MatryoshkaLoss hands us truncated student embeddings: compare at the same width
            terms.append(1.0 - F.cosine_similarity(s, b[..., :d], dim=-1).mean())
        return torch.stack(terms).mean()

    def get_config_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "temperature": self.temperature, "teacher_temperature": self.teacher_temperature,
                "distill_weight": self.distill_weight, "contrastive_weight": self.contrastive_weight,
                "same_tower": self.same_tower, "n_contrastive": self.n_contrastive, "base_weight": self.base_weight}

    @property
    def citation(self) -> str:
        return _GECKO_CITATION
