"""Retrieval metrics: hand-computed tables, trec_eval's tie-breaking, and parity with pytrec_eval.

Run: ``.venv/bin/pytest tests/unit/test_metrics.py``.
"""

from __future__ import annotations

import math
import random

import pytest

from gecko_distill.retrieval.metrics import ndcg_at_k, rank_documents, recall_at_k, score_run

QRELS = {"a": 2, "b": 1, "c": 0}


@pytest.mark.parametrize(
    ("ranking", "k", "expected"),
    [
        # DCG = 2/log2(3); IDCG = 2/log2(2) + 1/log2(3)
        (["c", "a", "x", "b"], 3, (2 / math.log2(3)) / (2 + 1 / math.log2(3))),
        # + b at rank 4: 1/log2(5)
        (["c", "a", "x", "b"], 4, (2 / math.log2(3) + 1 / math.log2(5)) / (2 + 1 / math.log2(3))),
        (["a", "b"], 10, 1.0),  # ideal order
        (["b", "a"], 10, (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))),  # gain = grade, not 2**grade - 1
        (["x", "y"], 10, 0.0),
        (["a", "b"], 1, 1.0),
    ],
)
def test_ndcg_hand_computed(ranking: list[str], k: int, expected: float) -> None:
    assert ndcg_at_k(ranking, QRELS, k) == pytest.approx(expected, abs=1e-12)


def test_ndcg_values_of_the_table() -> None:
    assert ndcg_at_k(["c", "a", "x", "b"], QRELS, 3) == pytest.approx(0.479625, abs=1e-6)
    assert ndcg_at_k(["c", "a", "x", "b"], QRELS, 4) == pytest.approx(0.643322, abs=1e-6)


def test_recall_counts_only_positive_judgements() -> None:
    assert recall_at_k(["c", "a"], QRELS, 2) == 0.5  # c is judged 0: not relevant
    assert recall_at_k(["c", "a", "x", "b"], QRELS, 4) == 1.0
    assert recall_at_k(["a"], {"z": 0}, 5) == 0.0


def test_ties_break_by_descending_id_like_trec_eval() -> None:
    assert rank_documents({"a": 1.0, "b": 1.0, "c": 2.0, "d": 0.5}) == ["c", "b", "a", "d"]


def test_score_run_matches_the_pure_functions_on_a_random_run_with_ties() -> None:
    """Parity tier: pytrec_eval (what mteb uses) and our pure nDCG/recall agree to 1e-9 on 50 queries."""
    rng = random.Random(7)
    docs = [f"d{i:02d}" for i in range(40)]
    qrels, run = {}, {}
    for q in range(50):
        qid = f"q{q}"
        judged = rng.sample(docs, 6)
        qrels[qid] = {d: rng.choice([0, 1, 1, 2]) for d in judged}
        # scores rounded to 1 decimal so that many ties occur
        run[qid] = {d: round(rng.random(), 1) for d in rng.sample(docs, 25)}
    ks = (1, 5, 10, 20)
    ours = score_run(run, qrels, ks)
    valid = [q for q in qrels if any(r > 0 for r in qrels[q].values())]
    for k in ks:
        pure_ndcg = sum(ndcg_at_k(rank_documents(run[q]), qrels[q], k) for q in valid) / len(valid)
        pure_recall = sum(recall_at_k(rank_documents(run[q]), qrels[q], k) for q in valid) / len(valid)
        assert ours[f"ndcg_at_{k}"] == pytest.approx(pure_ndcg, abs=1e-9)
        assert ours[f"recall_at_{k}"] == pytest.approx(pure_recall, abs=1e-9)


def test_score_run_counts_a_query_missing_from_the_run_as_zero() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    assert score_run({"q1": {"a": 1.0}}, qrels, (10,))["ndcg_at_10"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no query"):
        score_run({}, {"q": {"a": 0}})
