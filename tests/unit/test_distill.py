"""Distillation of candidate scores: teacher scores, the two distillation terms against hand computations,
and DistillLoss on the real packaged MiniLM (gradients reach the model; the base anchor is zero at the start
and holds the student near the base)."""

from __future__ import annotations

import math

import pytest
import torch
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss

from gecko_distill.errors import InputError
from gecko_distill.training import TrainingConfig
from gecko_distill.training.data import format_fret_rows, teacher_scores
from gecko_distill.training.distill import DistillLoss, listwise_kl, margin_mse
from gecko_distill.training.loop import build_loss, contrastive_no_duplicates


def _cands(ql: list[float], retr: list[float] | None = None) -> list[dict]:
    retr = retr or [0.5] * len(ql)
    return [{"id": f"d{j}", "title": "", "text": f"passage {j}", "ql": q, "retriever": r, "rank_retriever": j + 1}
            for j, (q, r) in enumerate(zip(ql, retr, strict=True))]


def test_teacher_scores_are_per_row_z_scores_weighted() -> None:
    t = teacher_scores(_cands([-1.0, -2.0, -3.0]), {"ql": 1.0})
    assert t == pytest.approx([math.sqrt(1.5), 0.0, -math.sqrt(1.5)])
    both = teacher_scores(_cands([-1.0, -2.0, -3.0], [0.1, 0.3, 0.2]), {"ql": 1.0, "retriever": 0.5})
    r = [0.1, 0.3, 0.2]
    m = sum(r) / 3
    sd = math.sqrt(sum((x - m) ** 2 for x in r) / 3)
    assert both == pytest.approx([a + 0.5 * (x - m) / sd for a, x in zip(t, r, strict=True)])
    # A flat signal carries no ranking: it adds nothing (not a division by zero).
    assert teacher_scores(_cands([-2.0, -2.0, -2.0]), {"ql": 1.0}) == [0.0, 0.0, 0.0]


def test_teacher_scores_name_the_missing_signal() -> None:
    with pytest.raises(InputError, match="no 'rc' score.*'ql'"):
        teacher_scores(_cands([-1.0, -2.0]), {"rc": 1.0}, where="fret.jsonl:3")


def test_listwise_kl_matches_a_hand_computation() -> None:
    s = torch.tensor([[2.0, 0.0, -1.0]])
    t = torch.tensor([[1.0, 0.5, -1.5]])
    p = [math.exp(x / 0.5) for x in t[0].tolist()]
    p = [x / sum(p) for x in p]
    q = [math.exp(x) for x in s[0].tolist()]
    q = [x / sum(q) for x in q]
    want = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    assert float(listwise_kl(s, t, teacher_temperature=0.5)) == pytest.approx(want, rel=1e-6)
    assert float(listwise_kl(t / 0.5, t, teacher_temperature=0.5)) == pytest.approx(0.0, abs=1e-6)


def test_margin_mse_matches_a_hand_computation() -> None:
    s = torch.tensor([[1.0, 3.0, 0.0]])
    t = torch.tensor([[2.0, 0.0, 1.0]])          # teacher's top: candidate 0
    want = (((1 - 3) - (2 - 0)) ** 2 + ((1 - 0) - (2 - 1)) ** 2) / 2
    assert float(margin_mse(s, t)) == pytest.approx(want)


def _row(i: int, n: int = 4) -> dict:
    return {"task": "Given a claim, find evidence", "task_type": "fact_checking", "query": f"claim {i}",
            "positive_text": f"passage {i}", "positive_title": "", "negative_text": f"passage {i + 1}",
            "negative_title": "", "seed_id": "d0", "candidates": _cands([-1.0 - j for j in range(n)])}


def test_fret_rows_carry_candidates_and_teacher_labels_in_the_chosen_format() -> None:
    rows = [_row(0), _row(1), _row(2, n=3)]
    cols, dropped = format_fret_rows(rows, mode="none", teacher={"ql": 1.0})
    assert dropped == {"candidate_count": 1}                          # the 3-candidate row cannot share a batch
    assert list(cols) == ["anchor", "positive", "negative", "cand_0", "cand_1", "cand_2", "cand_3", "label"]
    assert cols["anchor"] == ["claim 0", "claim 1"]                   # raw text: no prompt
    assert cols["cand_2"] == ["passage 2", "passage 2"]
    assert cols["label"][0] == pytest.approx(teacher_scores(_cands([-1.0, -2.0, -3.0, -4.0]), {"ql": 1.0}))
    unified, _ = format_fret_rows(rows[:1], mode="unified", teacher={"ql": 1.0})
    assert unified["cand_0"] == ["title: none | text: passage 0"]
    assert unified["anchor"] == ["task: Given a claim, find evidence | query: claim 0"]


def test_old_fret_rows_without_candidate_texts_need_the_corpus() -> None:
    row = _row(0)
    for c in row["candidates"]:
        del c["text"], c["title"]
    with pytest.raises(InputError, match="training.corpus"):
        format_fret_rows([row], mode="none", teacher={"ql": 1.0})
    corpus = {f"d{j}": ("", f"from corpus {j}") for j in range(4)}
    cols, _ = format_fret_rows([row], mode="none", teacher={"ql": 1.0}, corpus=corpus)
    assert cols["cand_3"] == ["from corpus 3"]


def test_no_duplicates_sampler_ignores_candidate_columns() -> None:
    from datasets import Dataset

    # Every row shares its candidates with the others (neighbouring queries): batches must still fill.
    ds = Dataset.from_dict({"anchor": [f"q{i}" for i in range(8)], "positive": [f"p{i}" for i in range(8)],
                            "cand_0": ["shared"] * 8, "cand_1": ["also shared"] * 8, "label": [[0.0, 1.0]] * 8})
    sampler = contrastive_no_duplicates(ds, batch_size=4, drop_last=False, valid_label_columns=["label"])
    assert [len(b) for b in sampler] == [4, 4]


@pytest.fixture(scope="module")
def minilm():
    from gecko_distill.embedding import load_embedder

    torch.manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_embedder("all-MiniLM-L6-v2", device="cpu", max_seq_length=32)
    torch.set_num_threads(before)


def _features(model, columns: list[list[str]]) -> list[dict]:
    return [model.tokenize(c) for c in columns]


def test_distill_loss_on_minilm_trains_every_term_under_matryoshka(minilm) -> None:
    queries = ["bushfire near the town", "rain in the city", "stock market falls"]
    cands = [["fire threatens homes", "heavy rain floods streets", "shares drop sharply"]] * 3
    columns = [queries, [c[0] for c in cands], [c[2] for c in cands]] + [[c[j] for c in cands] for j in range(3)]
    labels = torch.tensor([[2.0, 0.0, -2.0], [0.0, 2.0, -2.0], [-2.0, 0.0, 2.0]])
    cfg = TrainingConfig(distill="listwise", base_weight=0.5, matryoshka_dims=[384, 64])
    loss, dims = build_loss(minilm, cfg, same_tower=True, n_contrastive=3)
    assert isinstance(loss, MatryoshkaLoss) and isinstance(loss.loss, DistillLoss) and dims == [384, 64]
    minilm.train()
    value = loss(_features(minilm, columns), labels)
    value.backward()
    grads = [p.grad for p in minilm.parameters() if p.grad is not None]
    assert math.isfinite(float(value.detach())) and grads and any(float(g.abs().sum()) > 0 for g in grads)
    # The frozen base is a copy: it gets no gradient and is not part of the loss's parameters.
    assert not list(loss.loss.parameters()) or all(p.requires_grad is False for p in loss.loss._base[0].parameters())
    minilm.zero_grad()


def test_base_anchor_is_zero_for_the_unchanged_model_and_grows_when_it_moves(minilm) -> None:
    minilm.eval()
    loss = DistillLoss.with_frozen_base(minilm, n_contrastive=2, distill_weight=0.0, contrastive_weight=0.0,
                                        base_weight=1.0)
    feats = _features(minilm, [["a short query"], ["a passage about something"]])
    with torch.no_grad():
        assert float(loss(feats, None)) == pytest.approx(0.0, abs=1e-5)
        p = next(iter(minilm.parameters()))
        saved = p.clone()
        p.add_(0.05 * torch.randn_like(p))
        moved = float(loss(_features(minilm, [["a short query"], ["a passage about something"]]), None))
        p.copy_(saved)
    assert moved > 1e-4


def test_distillation_refuses_gradcache_and_an_empty_teacher() -> None:
    with pytest.raises(ValueError, match="distill_signals"):
        TrainingConfig(distill="listwise", distill_signals={})
    with pytest.raises(ValueError, match="nothing to train"):
        TrainingConfig(distill="listwise", distill_weight=0.0, contrastive_weight=0.0)


def test_merge_with_base_interpolates_every_weight(minilm) -> None:
    from gecko_distill.training.loop import merge_weights

    name, p = next((n, p) for n, p in minilm.named_parameters() if p.ndim == 2)
    base = p.detach().clone()
    with torch.no_grad():
        p.add_(1.0)                                                 # "trained": every weight moved by +1
        merge_weights(minilm, "all-MiniLM-L6-v2", 0.25)
        assert torch.allclose(p, base + 0.75, atol=1e-5)            # 0.75 * (base + 1) + 0.25 * base
        merge_weights(minilm, "all-MiniLM-L6-v2", 0.999999)         # back to the base for the other tests
    assert torch.allclose(p, base, atol=1e-4)


def test_distill_candidates_keep_the_teacher_head_and_a_spread() -> None:
    from gecko_distill.training.data import spread_subset

    scores = [0.1, 0.9, 0.5, -1.0, 0.3, 0.0]           # teacher order: 1, 2, 4, 0, 5, 3
    assert spread_subset(scores, 4) == [1, 2, 4, 3]     # top 2, then the first and last of the rest
    assert spread_subset(scores, 3) == [1, 2, 3]
    assert spread_subset(scores, 10) == [1, 2, 4, 0, 5, 3]
    cols, _ = format_fret_rows([_row(0, n=6)], mode="none", teacher={"ql": 1.0}, max_candidates=3)
    assert [c for c in cols if c.startswith("cand_")] == ["cand_0", "cand_1", "cand_2"]
    assert cols["cand_0"] == ["passage 0"] and cols["cand_2"] == ["passage 5"] and len(cols["label"][0]) == 3


def test_distill_auto_uses_scored_candidates_when_the_rows_have_them() -> None:
    from gecko_distill.training.data import resolve_distill

    rows = [_row(0)]
    assert resolve_distill("auto", rows, {"ql": 1.0}) == "listwise"
    assert resolve_distill("auto", rows, {"rc": 1.0}) == "none"           # the signal was not mined
    old = [dict(_row(0), candidates=[{k: v for k, v in c.items() if k != "text"} for c in _row(0)["candidates"]])]
    assert resolve_distill("auto", old, {"ql": 1.0}) == "none"            # no texts: an older FRet set
    assert resolve_distill("auto", old, {"ql": 1.0}, has_corpus=True) == "listwise"
    assert resolve_distill("auto", [dict(_row(0), candidates=[])], {"ql": 1.0}) == "none"
    assert resolve_distill("none", rows, {"ql": 1.0}) == "none"
