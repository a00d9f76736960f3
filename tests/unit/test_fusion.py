"""RRF exactly as Gecko App. A (1/r_QL + 1/r_RC), checked against hand-computed tables."""

from __future__ import annotations

import pytest

from gecko_distill.labelling.fusion import fuse, rank


def test_rank_is_one_based_higher_first_ties_by_position():
    assert rank([0.1, 0.9, 0.5]) == [3, 1, 2]
    assert rank([0.5, 0.5, 0.7]) == [2, 3, 1]  # tie: the earlier (retriever order) candidate wins


def test_rrf_k0_hand_computed():
    # 4 candidates. QL ranks: [2, 1, 4, 3]; RC ranks: [1, 3, 2, 4].
    # R = 1/r_QL + 1/r_RC: c0 = 1/2 + 1 = 1.5; c1 = 1 + 1/3 = 1.3333; c2 = 1/4 + 1/2 = 0.75; c3 = 1/3 + 1/4 = 0.5833
    fused, order = fuse({"ql": [2, 1, 4, 3], "rc": [1, 3, 2, 4]})
    assert fused == pytest.approx([1.5, 4 / 3, 0.75, 7 / 12])
    assert order == [0, 1, 2, 3]


def test_rrf_with_k60_and_weights():
    fused, order = fuse({"ql": [1, 2], "rc": [2, 1]}, k=60, weights={"ql": 2.0, "rc": 1.0})
    assert fused == pytest.approx([2 / 61 + 1 / 62, 2 / 62 + 1 / 61])
    assert order == [0, 1]


def test_ties_broken_by_ql_score_then_position():
    # c0: 1/1 + 1/2 = 1.5 ; c1: 1/2 + 1/1 = 1.5 -> tie. QL scores say c1 is better.
    _, order = fuse({"ql": [1, 2], "rc": [2, 1]}, tie_scores=[-2.0, -1.0])
    assert order == [1, 0]
    _, order = fuse({"ql": [1, 2], "rc": [2, 1]})  # no tie scores: retriever position
    assert order == [0, 1]


def test_zero_weight_drops_a_signal():
    _, order = fuse({"ql": [3, 2, 1], "rc": [1, 2, 3]}, weights={"rc": 0.0})
    assert order == [2, 1, 0]


def test_bad_inputs():
    with pytest.raises(ValueError, match="different lengths"):
        fuse({"ql": [1, 2], "rc": [1]})
    with pytest.raises(ValueError, match="no rankings"):
        fuse({})
