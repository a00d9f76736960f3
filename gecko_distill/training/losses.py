"""The Gecko fine-tuning loss (paper eq. 3) and its GradCache variant, as sentence-transformers losses.

Eq. 3, for a batch of B rows (q_i, p⁺_i, p⁻_i) and s(x, y) = cos(x, y) / τ::

    L = (1/B) Σ_i −log  exp s(q_i,p⁺_i) / (Σ_j exp s(q_i,p⁺_j) + Σ_{j≠i} exp s(q_i,q_j) + exp s(q_i,p⁻_i))

so each query is a (2B + k)-way classification: the B in-batch positives (its own is the target), the B
in-batch queries with itself masked (same-tower negatives), and its *own* k hard negatives (k = 1 in the
paper). How it differs from sentence-transformers' ``MultipleNegativesRankingLoss``: MNRL puts *every*
row's hard negatives into every query's denominator, while eq. 3 gives query i only p⁻_i. The loss is
one-directional (no document→query term).

Both classes are plain sentence-transformers losses (``forward(sentence_features, labels)``,
``get_config_dict``, ``citation``), so ``MatryoshkaLoss`` wraps them unchanged: it patches the model's
forward for :class:`GeckoLoss` and decorates ``calculate_loss`` for :class:`CachedGeckoLoss`.

Not covered: cross-device gathering of in-batch negatives (each device sees its own batch).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers.base.losses.gradcache import CachedLossMixin, has_static_embedding_input
from sentence_transformers.base.losses.merged_forward import embed_columns
from torch import Tensor, nn

__all__ = ["CachedGeckoLoss", "GeckoLoss", "gecko_logits"]

logger = logging.getLogger(__name__)

_GECKO_CITATION = """
@article{lee2024gecko,
    title={Gecko: Versatile Text Embeddings Distilled from Large Language Models},
    author={Jinhyuk Lee and Zhuyun Dai and Xiaoqi Ren and Blair Chen and Daniel Cer and Jeremy R. Cole and
            Kai Hui and Michael Boratko and Rajvi Kapadia and Wen Ding and Yi Luan and
            Sai Meher Karthik Duddu and Gustavo Hernandez Abrego and Weiqiang Shi and Nithi Gupta and
            Aditya Kusupati and Prateek Jain and Siddhartha Reddy Jonnalagadda and Ming-Wei Chang and
            Iftekhar Naim},
    journal={arXiv preprint arXiv:2403.20327},
    year={2024}
}
"""


def gecko_logits(
    queries: Tensor,
    positives: Tensor,
    negatives: Sequence[Tensor] = (),
    *,
    scale: float,
    same_tower: bool = True,
    begin: int = 0,
    end: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Eq. 3 logits for the query rows ``begin:end`` of a batch, and their target column indices.

    Args:
        queries: ``(B, d)`` query embeddings of the whole batch (any norm; cosine is taken here).
        positives: ``(B, d)`` positive embeddings, row-aligned with ``queries``.
        negatives: k tensors of ``(B, d)``: row i's own hard negatives. Other rows never see them.
        scale: ``1 / τ``.
        same_tower: include the other in-batch queries as negatives (``j = i`` masked).
        begin, end: the row chunk to compute (GradCache computes the loss chunk by chunk).

    Returns:
        ``(logits, targets)``: logits ``(c, B [+ B] + k)`` with columns [positives | queries | own negatives],
        targets ``(c,)`` = ``begin … end-1`` (row i's positive sits in column i).
    """
    batch = queries.size(0)
    end = batch if end is None else end
    # Normalise here (not once per batch) so that each chunk's graph is self-contained: GradCache
    # back-propagates chunk by chunk, and a shared normalisation graph would be freed after chunk 1.
    q_all = F.normalize(queries, p=2, dim=-1)                      # (B, d)
    p_all = F.normalize(positives, p=2, dim=-1)                    # (B, d)
    q = q_all[begin:end]                                           # (c, d)
    rows = torch.arange(end - begin, device=queries.device)        # (c,)
    targets = rows + begin                                         # (c,) the own positive's column

    blocks = [q @ p_all.T]                                         # (c, B) in-batch positives
    if same_tower:
        qq = q @ q_all.T                                           # (c, B) same-tower similarities
        self_mask = torch.zeros_like(qq, dtype=torch.bool)
        self_mask[rows, targets] = True                            # q_i vs itself is not a negative
        blocks.append(qq.masked_fill(self_mask, float("-inf")))
    for neg in negatives:
        n = F.normalize(neg[begin:end], p=2, dim=-1)               # (c, d) only this row's own negative
        blocks.append((q * n).sum(dim=-1, keepdim=True))           # (c, 1)
    logits = torch.cat(blocks, dim=1) * scale                      # (c, B [+ B] + k)
    return logits, targets


def _check_columns(n: int, name: str) -> None:
    if n < 2:
        raise ValueError(f"{name} needs (query, positive[, negative ...]) columns, got {n} column(s)")


class GeckoLoss(nn.Module):
    """Gecko's fine-tuning loss (eq. 3): in-batch positives, same-tower queries and the own hard negative.

    Args:
        model: the SentenceTransformer being trained.
        temperature: τ; logits are cosine / τ (default 0.05, i.e. scale 20).
        same_tower: include the other in-batch queries as negatives (SamToNe). With ``same_tower=False``
            and (query, positive) pairs this is eq. 2, the pre-finetuning InfoNCE.

    References:
        - Lee et al., Gecko, arXiv:2403.20327, §3.1 eq. 2 and §3.3 eq. 3.
        - Moiseev et al., SamToNe: same-tower negatives, 2023.

    Inputs:
        +------------------------------------------------+--------+
        | Inputs                                         | Labels |
        +================================================+========+
        | (anchor, positive) pairs                       | none   |
        +------------------------------------------------+--------+
        | (anchor, positive, negative) triplets          | none   |
        +------------------------------------------------+--------+
        | (anchor, positive, negative_1, …, negative_k)  | none   |
        +------------------------------------------------+--------+

    Recommendations:
        - Use ``BatchSamplers.NO_DUPLICATES``: a duplicate text in the batch is a false negative.
        - Wrap it in ``MatryoshkaLoss`` for truncatable embeddings (the paper trains 768 and 256).

    Relations:
        - ``MultipleNegativesRankingLoss(directions=("query_to_doc", "query_to_query"))`` equals this loss on
          pairs, but on triplets it puts every row's negatives into every denominator.
        - :class:`CachedGeckoLoss` computes the same value and gradients with GradCache.
    """

    def __init__(self, model: nn.Module, temperature: float = 0.05, same_tower: bool = True) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.model = model
        self.temperature = temperature
        self.same_tower = same_tower

    @property
    def scale(self) -> float:
        return 1.0 / self.temperature

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        features = list(sentence_features)
        _check_columns(len(features), type(self).__name__)
        # One forward for the anchors, one merged forward for the candidate columns (like MNRL).
        return self.compute_loss_from_embeddings(embed_columns(self.model, features), labels)

    def compute_loss_from_embeddings(self, embeddings: Sequence[Tensor],
                                     labels: Tensor | None = None) -> Tensor:
        """Eq. 3 from ``[queries (B, d), positives (B, d), negatives (B, d) …]``; labels are unused."""
        _check_columns(len(embeddings), type(self).__name__)
        logits, targets = gecko_logits(embeddings[0], embeddings[1], embeddings[2:], scale=self.scale,
                                       same_tower=self.same_tower)
        return F.cross_entropy(logits, targets)                    # mean over the B queries

    def get_config_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "same_tower": self.same_tower}

    @property
    def citation(self) -> str:
        return _GECKO_CITATION


class CachedGeckoLoss(CachedLossMixin, nn.Module):
    """:class:`GeckoLoss` with GradCache: same value and gradients, activation memory of one mini-batch.

    The three GradCache steps come from sentence-transformers' ``CachedLossMixin``: (1) embed every
    mini-batch without a graph, (2) compute eq. 3 over the whole batch and back-propagate it to the
    embeddings only, (3) re-embed each mini-batch with a graph and push the cached embedding gradients
    through it. Step (2) here runs ``mini_batch_size`` query rows at a time, so the logit matrix alive at
    once is ``(mini_batch_size, 2B + k)`` rather than ``(B, 2B + k)``.

    Args:
        model: the SentenceTransformer being trained.
        temperature: τ (default 0.05).
        same_tower: include the other in-batch queries as negatives.
        mini_batch_size: rows embedded (and loss rows computed) at a time; bounds peak memory.
        show_progress_bar: show a bar over the mini-batches.

    References:
        - Lee et al., Gecko, arXiv:2403.20327, eq. 3.
        - Gao et al., Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup
          (GradCache), arXiv:2101.06983.

    Inputs:
        Same as :class:`GeckoLoss`.

    Relations:
        - Equals :class:`GeckoLoss` (tested to 1e-5 on value and gradients with dropout off); trains
          slower (every row is embedded twice) but its peak memory does not grow with the batch.
    """

    def __init__(
        self,
        model: nn.Module,
        temperature: float = 0.05,
        same_tower: bool = True,
        mini_batch_size: int = 32,
        show_progress_bar: bool = False,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1, got {mini_batch_size}")
        if has_static_embedding_input(model):
            raise ValueError("CachedGeckoLoss cannot split a StaticEmbedding model's inputs into "
                             "mini-batches; use GeckoLoss instead.")
        self.model = model
        self.temperature = temperature
        self.same_tower = same_tower
        self.mini_batch_size = mini_batch_size
        self.show_progress_bar = show_progress_bar

    @property
    def scale(self) -> float:
        return 1.0 / self.temperature

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        features = list(sentence_features)
        _check_columns(len(features), type(self).__name__)
        return self.forward_cached(features, labels)

    def calculate_loss(
        self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False
    ) -> Tensor:
        """Eq. 3 over the whole batch from per-mini-batch embeddings ``reps[column][mini_batch]``.

        With ``with_backward``, each chunk of query rows is back-propagated (to the embeddings) as soon as
        it is computed and only its detached value is kept, so no chunk's graph outlives its backward.
        """
        queries = torch.cat(reps[0])                               # (B, d)
        positives = torch.cat(reps[1])                             # (B, d)
        negatives = [torch.cat(r) for r in reps[2:]]               # k × (B, d)
        batch = queries.size(0)
        total = torch.zeros((), device=queries.device)
        for begin in range(0, batch, self.mini_batch_size):
            end = min(begin + self.mini_batch_size, batch)
            logits, targets = gecko_logits(queries, positives, negatives, scale=self.scale,
                                           same_tower=self.same_tower, begin=begin, end=end)
            # Sum over the chunk / B: the chunks add up to the batch mean, as in GeckoLoss.
            chunk = F.cross_entropy(logits, targets, reduction="sum") / batch
            if with_backward:
                chunk.backward()
                chunk = chunk.detach()
            total = total + chunk
        return total

    def get_config_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "same_tower": self.same_tower,
                "mini_batch_size": self.mini_batch_size}

    @property
    def citation(self) -> str:
        return _GECKO_CITATION
