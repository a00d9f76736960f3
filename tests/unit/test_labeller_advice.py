"""check-labeller's advice and warnings follow the measured rankings (which signals beat the first stage)."""

from __future__ import annotations

from gecko_distill.labelling.rerank_check import RerankReport, labeller_advice, labeller_warnings


def _report(**ndcg: float) -> RerankReport:
    return RerankReport(num_queries=50, top_k=10, metrics={k: {"ndcg_at_10": v} for k, v in ndcg.items()})


def test_no_signal_beats_the_retriever():
    rep = _report(first_stage=0.72, ql=0.707, rc=0.538, rrf=0.682)  # Qwen 0.5B, completion prompts (labeller.md)
    advice = labeller_advice(rep)
    assert "fusion = \"none\"" in advice and "round_trip_k" in advice
    assert [w.split(":")[0] for w in labeller_warnings(rep)] == ["ql", "rc", "rrf"]


def test_only_one_signal_helps():
    advice = labeller_advice(_report(first_stage=0.70, ql=0.73, rc=0.60, rrf=0.69))
    assert advice.startswith("only QL beats") and 'scorers = ["ql"]' in advice and "drops RC" in advice
    assert "margin is small" not in advice  # +0.03
    advice = labeller_advice(_report(first_stage=0.70, ql=0.65, rc=0.74, rrf=0.72))
    assert advice.startswith("only RC beats") and 'fusion = "rc"' in advice


def test_both_signals_help():
    advice = labeller_advice(_report(first_stage=0.70, ql=0.72, rc=0.74, rrf=0.76))
    assert advice.startswith("both signals") and "best here: rrf 0.760" in advice
    assert labeller_warnings(_report(first_stage=0.70, ql=0.72, rc=0.74, rrf=0.76)) == []


def test_a_small_margin_points_at_the_llm_free_mining():
    # Gemma-3-270M on SciFact (labeller.md): QL +0.018 over the retriever, RC below it
    advice = labeller_advice(_report(first_stage=0.635, ql=0.653, rc=0.40, rrf=0.60))
    assert advice.startswith("only QL beats") and "margin is small (+0.018)" in advice
    assert 'fusion = "none"' in advice
