"""fusion="auto": seed agreement numbers and the keep / down-weight / drop / fall-back rule, by hand."""

from __future__ import annotations

import logging

import pytest

from gecko_distill.labelling.auto_fusion import (
    RETRIEVER,
    FusionPlan,
    plan_from_seed,
    plan_fusion,
    seed_agreement,
)


def test_seed_agreement_hand_computed():
    # Two queries, three candidates each (retriever order). Seeds at index 1 and 0.
    scores = [{"ql": [0.1, 0.9, 0.5], "rc": [3.0, 1.0, 2.0]},  # ql ranks seed 1st; rc ranks it 3rd
              {"ql": [0.2, 0.8, 0.9], "rc": [5.0, 1.0, 0.0]}]  # ql ranks seed 3rd; rc 1st
    agree = seed_agreement(scores, [1, 0])
    # retriever: seed ranks 2 and 1 -> MRR (1/2 + 1)/2, seed-first 1/2, mean rank 1.5
    assert agree[RETRIEVER] == pytest.approx({"mrr": 0.75, "seed_first": 0.5, "mean_seed_rank": 1.5})
    assert agree["ql"] == pytest.approx({"mrr": (1 + 1 / 3) / 2, "seed_first": 0.5, "mean_seed_rank": 2.0})
    assert agree["rc"] == pytest.approx({"mrr": (1 / 3 + 1) / 2, "seed_first": 0.5, "mean_seed_rank": 2.0})


def test_signal_below_first_stage_is_dropped_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="gecko_distill.labelling.auto_fusion"):
        plan = plan_fusion({RETRIEVER: 0.60, "ql": 0.65, "rc": 0.30}, basis="qrels", sample_size=32)
    assert plan.weights == {"ql": 1.0}
    assert plan.mode == "ql"
    assert {c.name: c.verdict for c in plan.checks} == {RETRIEVER: "baseline", "ql": "kept", "rc": "dropped"}
    assert any("'rc' dropped" in r.getMessage() and "0.300 < first stage 0.600" in r.getMessage()
               for r in caplog.records)


def test_weaker_kept_signal_is_down_weighted_by_skill_over_chance():
    # chance 0.2: skills ql 0.5, rc 0.25 -> weights 1 and 0.5
    plan = plan_fusion({RETRIEVER: 0.40, "ql": 0.70, "rc": 0.45}, basis="seed", sample_size=10, chance=0.2)
    assert plan.weights == {"ql": 1.0, "rc": 0.5}
    assert plan.mode == "rrf"
    assert [c.verdict for c in plan.checks] == ["baseline", "kept", "down-weighted"]
    # weighted RRF (k=0): c0 ranks ql 2 / rc 1 -> 1/2 + 0.5 = 1.0; c1 ranks ql 1 / rc 2 -> 1 + 0.25 = 1.25
    fused, order = plan.order({"ql": [2, 1], "rc": [1, 2]}, 0, 2)
    assert fused == pytest.approx([1.0, 1.25])
    assert order == [1, 0]


def test_tie_goes_to_the_retriever_and_no_signal_means_seed_fallback(caplog):
    with caplog.at_level(logging.WARNING):
        plan = plan_fusion({RETRIEVER: 0.5, "ql": 0.49, "rc": 0.1}, basis="seed", sample_size=8)
    assert plan.fallback and plan.mode == RETRIEVER and plan.weights == {}
    assert any("falling back" in w for w in plan.warnings)
    fused, order = plan.order({}, 2, 3)
    assert order == [2, 0, 1]  # seed first, then the retriever order
    assert fused == pytest.approx([1 / 2, 1 / 3, 1.0])
    # equal to the first stage is not better: the retriever wins the tie, the signal is dropped, and the
    # retriever's ranking decides (the seed stays the positive) however the tied signal ranks the candidates
    tied = plan_fusion({RETRIEVER: 0.5, "ql": 0.5}, basis="seed", sample_size=8)
    assert tied.weights == {} and tied.fallback and tied.mode == RETRIEVER
    assert {c.name: c.verdict for c in tied.checks}["ql"] == "dropped"
    _, order = tied.order({"ql": [1, 2, 3]}, 2, 3)  # ql would put candidate 0 first
    assert order == [2, 0, 1]
    # a hair above the retriever is not a tie: the signal is kept and ranks alone
    assert plan_fusion({RETRIEVER: 0.5, "ql": 0.5001}, basis="seed", sample_size=8).weights == {"ql": 1.0}


def test_a_flat_signal_gets_no_credit_for_ties():
    # A signal that scores every candidate the same knows nothing: its seed MRR is that of a random order,
    # not 1.0 (a naive rank() would put every tied candidate, the seed included, first).
    scores = [{"ql": [-2.0, -2.0, -2.0, -2.0]}] * 6
    agree = seed_agreement(scores, [1] * 6)
    assert agree["ql"]["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    assert agree["ql"]["seed_first"] == pytest.approx(0.25) and agree["ql"]["mean_seed_rank"] == pytest.approx(2.5)
    assert plan_from_seed(scores, [0] * 6).fallback    # the retriever ranks the seed first: the flat signal loses


def test_small_samples_are_warned_about():
    plan = plan_fusion({RETRIEVER: 0.5, "ql": 0.7}, basis="seed", sample_size=8)
    assert plan.weights == {"ql": 1.0} and any("only 8 queries" in w for w in plan.warnings)
    assert not any("only" in w for w in plan_fusion({RETRIEVER: 0.5, "ql": 0.7}, basis="seed",
                                                    sample_size=64).warnings)


def test_plan_from_seed_and_round_trip():
    scores = [{"ql": [0.0, 1.0], "rc": [1.0, 0.0]}] * 4  # seed at index 1: ql puts it first, rc last
    plan = plan_from_seed(scores, [1] * 4)
    assert plan.basis == "seed" and plan.sample_size == 4
    assert plan.weights == {"ql": 1.0}  # retriever MRR 0.5, ql 1.0, rc 0.5 (tie with retriever: dropped)
    checks = {c.name: c for c in plan.checks}
    assert checks["ql"].details["seed_first"] == 1.0 and checks[RETRIEVER].details["mean_seed_rank"] == 2.0
    assert FusionPlan.from_dict(plan.as_dict()) == plan


def _toy_queries(n: int = 8):
    from gecko_distill.labelling.rerank_check import RerankQuery

    # three candidates in retriever order; the judged-relevant one is second
    return [RerankQuery(f"q{i}", f"query {i}", [f"a{i}", f"b{i}", f"c{i}"], ["x", "y", "z"], [0.9, 0.8, 0.7],
                        {f"b{i}": 1}) for i in range(n)]


def test_rerank_report_and_cross_fitted_auto_by_hand():
    from gecko_distill.labelling.rerank_check import _auto_crossfit, plan_on_qrels, plan_on_seed, rerank_report

    qs = _toy_queries()
    scores = [{"good": [0.0, 1.0, 0.5], "bad": [2.0, 0.0, 1.0]}] * len(qs)  # good: b first; bad: a, c, b
    rep = rerank_report(qs, scores)
    m = rep.metrics
    # nDCG@10 with one relevant document at rank r is 1 / log2(r + 1): first stage r=2, good r=1, bad r=3
    assert m["first_stage"]["ndcg_at_10"] == pytest.approx(0.6309, abs=1e-4)
    assert m["good"] == {"ndcg_at_10": 1.0, "p_at_1": 1.0, "moved": 1.0, "seed_first": 1.0}
    assert m["bad"]["ndcg_at_10"] == pytest.approx(0.5) and m["bad"]["moved"] == 0.0
    for planner in (plan_on_qrels, plan_on_seed):
        plan = planner(qs, scores)
        assert plan.weights == {"good": 1.0}, planner
        assert {c.name: c.verdict for c in plan.checks}["bad"] == "dropped"
        orders, plans = _auto_crossfit(qs, scores, 0.0, planner)
        assert len(plans) == 2 and all(o == [1, 2, 0] for o in orders)  # each half ranked by 'good' alone
