"""Positive and hard-negative policies on a fused order."""

from __future__ import annotations

import random

import pytest

from gecko_distill.mining.selection import select

ORDER = [3, 0, 4, 1, 2]  # fused order, best first; candidate 0 is the seed


def test_fused_positive_can_move_off_the_seed_and_last_is_rank_n():
    s = select(ORDER, seed_index=0)
    assert (s.positive, s.negative) == (3, 2)


def test_seed_policy_keeps_the_seed():
    s = select(ORDER, seed_index=0, positive_policy="seed")
    assert (s.positive, s.negative) == (0, 2)


def test_rank_k_and_collision_with_the_positive():
    assert select(ORDER, 0, negative_policy="rank:3").negative == 4
    assert select(ORDER, 0, negative_policy="rank:99").negative == 2  # clipped to the last rank
    # seed policy: p_2 is the seed itself, so the next lower candidate is taken
    assert select(ORDER, 0, positive_policy="seed", negative_policy="rank:2").negative == 4


def test_random_never_returns_the_positive_and_is_seeded():
    picks = {select(ORDER, 0, negative_policy="random", rng=random.Random(i)).negative for i in range(50)}
    assert picks == {0, 4, 1, 2}
    a = [select(ORDER, 0, negative_policy="random", rng=random.Random(7)).negative for _ in range(3)]
    assert len(set(a)) == 1


def test_bad_policy_names_are_errors():
    with pytest.raises(ValueError, match="valid: fused, seed"):
        select(ORDER, 0, positive_policy="best")
    with pytest.raises(ValueError, match="rank:K"):
        select(ORDER, 0, negative_policy="worst")
    with pytest.raises(ValueError, match="two candidates"):
        select([0], 0)
