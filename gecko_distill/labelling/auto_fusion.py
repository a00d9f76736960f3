"""``fusion = "auto"``: check each LLM signal against the first stage on a small sample before trusting it.

Gecko relabels the retriever's neighbours with the LLM, which only helps when the LLM ranks better than the
retriever. With a small LLM that is not a given (docs/labeller.md), so ``auto`` measures it first, on either

- **qrels** (a labelled sample, e.g. a few queries of a BEIR folder of the same domain): nDCG@10 of each
  signal's re-ranking of the first-stage top-N vs the first stage's own (:mod:`gecko_distill.labelling.rerank_check`);
- **seed agreement** (no labels): on the first mined queries, the mean reciprocal rank of the seed passage,
  the passage the query was written from, under each signal vs under the retriever. The seed is a noisy
  label (another candidate may be as good), but a labeller that ranks it lower than the retriever does is
  more likely to move a good positive off than to find a better one.

Rule (strict, the retriever wins ties): a signal that does not score above the first stage is **dropped**; the kept
ones are fused by weighted RRF with weights proportional to their skill over chance (the best kept signal
gets weight 1, a weaker one proportionally less: **down-weighted**). With one signal kept it ranks alone.
With none kept the plan **falls back** to the retriever: the seed stays the positive (the paper's seed
ablation) and the retriever's order gives the negatives. Every verdict is logged as a warning when a
signal is dropped and recorded in the stage summary.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from gecko_distill.labelling.fusion import fuse

__all__ = [
    "RETRIEVER",
    "FusionPlan",
    "SignalCheck",
    "plan_from_seed",
    "plan_fusion",
    "seed_agreement",
]

logger = logging.getLogger(__name__)

#: Name of the first-stage ranking in checks and plans.
RETRIEVER = "retriever"

#: Below this many queries the check's verdict is warned about: on SciFact the seed MRR of one signal moves by
#: ~0.05 between samples of 32 queries, more than the gap it is meant to detect.
MIN_RELIABLE_SAMPLE = 64


@dataclass(frozen=True)
class SignalCheck:
    """One ranking's score on the sample, and what ``auto`` did with it."""

    name: str
    score: float  # nDCG@10 (qrels) or seed MRR (seed agreement)
    weight: float  # 0 = dropped
    verdict: Literal["baseline", "kept", "down-weighted", "dropped"]
    details: dict[str, float] = field(default_factory=dict)  # seed_first, mean_seed_rank, p_at_1, ...


@dataclass(frozen=True)
class FusionPlan:
    """The outcome of the check: weights per signal, or the retriever fallback."""

    basis: Literal["qrels", "seed"]
    sample_size: int
    checks: list[SignalCheck]
    warnings: list[str]

    @property
    def weights(self) -> dict[str, float]:
        return {c.name: c.weight for c in self.checks if c.name != RETRIEVER and c.weight > 0}

    @property
    def fallback(self) -> bool:
        """True when no LLM signal beat the first stage: keep the seed as positive, retriever order."""
        return not self.weights

    @property
    def mode(self) -> str:
        """'retriever', a single signal name, or 'rrf'."""
        w = self.weights
        return RETRIEVER if not w else next(iter(w)) if len(w) == 1 else "rrf"

    def order(self, ranks: Mapping[str, Sequence[int]], seed_index: int, num_candidates: int, *,
              tie_scores: Sequence[float] | None = None, k: float = 0.0) -> tuple[list[float], list[int]]:
        """Fused scores and order (best first) of one query's candidates under this plan.

        ``ranks`` needs only the kept signals. In the fallback the seed comes first and the rest keep the
        retriever order (candidates are given in retriever order); the fused score is then ``1 / rank``.
        """
        if self.fallback:
            order = [seed_index] + [i for i in range(num_candidates) if i != seed_index]
            fused = [0.0] * num_candidates
            for r, i in enumerate(order, 1):
                fused[i] = 1.0 / r
            return fused, order
        w = self.weights
        return fuse({s: ranks[s] for s in w}, k=k, weights=w, tie_scores=tie_scores)

    def as_dict(self) -> dict[str, Any]:
        return {"basis": self.basis, "sample_size": self.sample_size, "mode": self.mode,
                "weights": self.weights, "checks": [asdict(c) for c in self.checks], "warnings": self.warnings}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FusionPlan:
        return cls(basis=d["basis"], sample_size=d["sample_size"], checks=[SignalCheck(**c) for c in d["checks"]],
                   warnings=list(d["warnings"]))


def seed_agreement(scores: Sequence[Mapping[str, Sequence[float]]], seed_positions: Sequence[int]
                   ) -> dict[str, dict[str, float]]:
    """Per ranking (the retriever and each signal): seed MRR, seed-first rate and mean seed rank.

    Args:
        scores: Per query, signal -> scores aligned with the candidates (given in retriever order).
        seed_positions: Per query, the seed's index among the candidates.
    """
    if not scores:
        raise ValueError("seed agreement needs at least one query")
    names = [RETRIEVER, *scores[0]]
    # Per query: (candidates ranked strictly above the seed, candidates tied with it). The retriever's order
    # is strict. A signal's ties are broken at random *in expectation*: a signal that gives every candidate
    # the same score carries no information and must not get credit for "ranking the seed first".
    places: dict[str, list[tuple[int, int]]] = {n: [] for n in names}
    for s, seed in zip(scores, seed_positions, strict=True):
        places[RETRIEVER].append((seed, 0))
        for n in names[1:]:
            v = s[n][seed]
            places[n].append((sum(x > v for x in s[n]), sum(x == v for x in s[n]) - 1))
    out = {}
    for n, ps in places.items():
        rr = [sum(1 / r for r in range(above + 1, above + tied + 2)) / (tied + 1) for above, tied in ps]
        first = [1 / (tied + 1) if above == 0 else 0.0 for above, tied in ps]
        out[n] = {"mrr": sum(rr) / len(rr), "seed_first": sum(first) / len(first),
                  "mean_seed_rank": sum(above + 1 + tied / 2 for above, tied in ps) / len(ps)}
    return out


def _chance_mrr(num_candidates: Sequence[int]) -> float:
    """Expected seed MRR of a random order: mean over queries of H_n / n."""
    return sum(sum(1 / r for r in range(1, n + 1)) / n for n in num_candidates) / max(len(num_candidates), 1)


def plan_fusion(scores: Mapping[str, float], *, basis: Literal["qrels", "seed"], sample_size: int,
                chance: float = 0.0, details: Mapping[str, Mapping[str, float]] | None = None) -> FusionPlan:
    """Apply the rule of the module docstring.

    Args:
        scores: Ranking name -> its score on the sample; must include :data:`RETRIEVER`.
        basis: What the scores are ('qrels': nDCG@10; 'seed': seed MRR).
        sample_size: Queries in the sample (reported).
        chance: The score of a random order (weights are skill over chance).
        details: Extra numbers per ranking for the report.
    """
    if RETRIEVER not in scores:
        raise ValueError("the first stage's score is needed as the baseline")
    base = scores[RETRIEVER]
    details = details or {}
    # Strictly better than the first stage: on a tie the retriever wins (relabelling would only add noise).
    kept = {n: s for n, s in scores.items() if n != RETRIEVER and s > base}
    best_skill = max((s - chance for s in kept.values()), default=0.0)
    what = "nDCG@10 on the labelled sample" if basis == "qrels" else "seed MRR (agreement with the seed passage)"
    checks = [SignalCheck(RETRIEVER, round(base, 4), 0.0, "baseline", dict(details.get(RETRIEVER, {})))]
    warnings: list[str] = []
    if sample_size < MIN_RELIABLE_SAMPLE:
        warnings.append(f"the check ran on only {sample_size} queries (< {MIN_RELIABLE_SAMPLE}): its verdict is "
                        "noisy; raise mining.auto_sample, or pass auto_labelled, or choose fusion yourself")
    for n, s in scores.items():
        if n == RETRIEVER:
            continue
        if n not in kept:
            checks.append(SignalCheck(n, round(s, 4), 0.0, "dropped", dict(details.get(n, {}))))
            warnings.append(f"LLM signal {n!r} dropped: {what} {s:.3f} < first stage {base:.3f} "
                            f"on {sample_size} queries")
            continue
        w = 1.0 if best_skill <= 0 else round(max(s - chance, 0.0) / best_skill, 4)
        verdict = "kept" if w >= 1.0 else "down-weighted" if w > 0 else "dropped"  # 0: no better than chance
        checks.append(SignalCheck(n, round(s, 4), w, verdict, dict(details.get(n, {}))))
    plan = FusionPlan(basis=basis, sample_size=sample_size, checks=checks, warnings=warnings)
    if plan.fallback:
        plan.warnings.append("no LLM signal beats the first stage: the labeller would make positives worse; "
                             "falling back to the seed passage as positive and the retriever order for negatives")
    for msg in plan.warnings:
        logger.warning("fusion=auto: %s", msg)
    logger.info("fusion=auto on %d queries (%s): mode %s, weights %s", sample_size, basis, plan.mode, plan.weights)
    return plan


def plan_from_seed(scores: Sequence[Mapping[str, Sequence[float]]], seed_positions: Sequence[int]) -> FusionPlan:
    """``auto`` without labels: seed agreement on mined queries."""
    agree = seed_agreement(scores, seed_positions)
    chance = _chance_mrr([len(next(iter(s.values()))) for s in scores])
    return plan_fusion({n: m["mrr"] for n, m in agree.items()}, basis="seed", sample_size=len(scores),
                       chance=chance, details={n: {k: round(v, 4) for k, v in m.items()} for n, m in agree.items()})
