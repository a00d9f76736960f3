"""GeckoLoss against a hand computation of eq. 3, vs MultipleNegativesRankingLoss, and GradCache parity.

Run: ``.venv/bin/pytest tests/unit/test_losses.py`` (the parity tests load the packaged MiniLM, ~10 s).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss, MultipleNegativesRankingLoss

from gecko_distill.errors import ConfigError
from gecko_distill.training import CachedGeckoLoss, GeckoLoss, TrainingConfig
from gecko_distill.training.loop import build_loss
from gecko_distill.training.losses import gecko_logits

TAU = 0.05


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, 2 threads oversubscribe and run ~5x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _eq3_by_hand(q: np.ndarray, p: np.ndarray, n: np.ndarray | None, tau: float, same_tower: bool) -> float:
    """Eq. 3 with explicit loops.

    −log exp s(q_i,p_i) / (Σ_j exp s(q_i,p_j) + Σ_{j≠i} exp s(q_i,q_j) + exp s(q_i,n_i)), averaged over i.
    """
    b = len(q)
    total = 0.0
    for i in range(b):
        num = math.exp(_cos(q[i], p[i]) / tau)
        den = 0.0
        for j in range(b):
            den += math.exp(_cos(q[i], p[j]) / tau)
            if same_tower and j != i:
                den += math.exp(_cos(q[i], q[j]) / tau)
        if n is not None:
            den += math.exp(_cos(q[i], n[i]) / tau)
        total += -math.log(num / den)
    return total / b


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    q, p, n = (torch.randn(4, 6, generator=g, dtype=torch.float64) for _ in range(3))
    return q, p, n


@pytest.mark.parametrize("same_tower", [True, False])
@pytest.mark.parametrize("with_negative", [True, False])
def test_gecko_loss_equals_hand_computed_eq3(batch, same_tower: bool, with_negative: bool) -> None:
    q, p, n = batch
    loss = GeckoLoss(model=None, temperature=TAU, same_tower=same_tower)
    embs = [q, p, n] if with_negative else [q, p]
    got = loss.compute_loss_from_embeddings(embs).item()
    want = _eq3_by_hand(q.numpy(), p.numpy(), n.numpy() if with_negative else None, TAU, same_tower)
    assert got == pytest.approx(want, rel=1e-9)


def test_temperature_changes_the_loss(batch) -> None:
    q, p, n = batch
    hot = GeckoLoss(model=None, temperature=1.0).compute_loss_from_embeddings([q, p, n]).item()
    assert hot == pytest.approx(_eq3_by_hand(q.numpy(), p.numpy(), n.numpy(), 1.0, True), rel=1e-9)
    assert hot != pytest.approx(GeckoLoss(model=None).compute_loss_from_embeddings([q, p, n]).item())


def test_query_sees_only_its_own_hard_negative(batch) -> None:
    q, p, n = batch
    logits, targets = gecko_logits(q, p, [n], scale=1 / TAU)
    assert logits.shape == (4, 4 + 4 + 1)                      # B positives + B queries + 1 own negative
    assert targets.tolist() == [0, 1, 2, 3]
    n2 = n.clone()
    n2[1:] = torch.randn(3, 6, dtype=torch.float64)             # change every other row's negative
    logits2, _ = gecko_logits(q, p, [n2], scale=1 / TAU)
    assert torch.equal(logits[0], logits2[0])                   # row 0's logits do not move
    assert not torch.equal(logits[1], logits2[1])
    assert logits[2, 4 + 2] == -math.inf                        # q_i vs itself is masked


def test_differs_from_mnrl_exactly_by_other_rows_negatives(batch) -> None:
    q, p, n = batch
    gecko = GeckoLoss(model=None, temperature=TAU)
    mnrl = MultipleNegativesRankingLoss(model=None, scale=1 / TAU,
                                        directions=("query_to_doc", "query_to_query"))

    # On pairs (no hard negatives) the two are the same loss.
    assert gecko.compute_loss_from_embeddings([q, p]).item() == pytest.approx(
        mnrl.compute_loss_from_embeddings([q, p], None).item(), rel=1e-9)

    # On triplets MNRL adds Σ_{j≠i} exp s(q_i, n_j) to every denominator; eq. 3 does not.
    got_gecko = gecko.compute_loss_from_embeddings([q, p, n]).item()
    got_mnrl = mnrl.compute_loss_from_embeddings([q, p, n], None).item()
    assert got_mnrl > got_gecko + 1e-3
    qn, pn, nn_ = (x.numpy() for x in (q, p, n))
    want_mnrl = 0.0
    for i in range(4):
        s_pos = _cos(qn[i], pn[i]) / TAU
        den = sum(math.exp(_cos(qn[i], pn[j]) / TAU) + math.exp(_cos(qn[i], nn_[j]) / TAU) for j in range(4))
        den += sum(math.exp(_cos(qn[i], qn[j]) / TAU) for j in range(4) if j != i)
        want_mnrl += -(s_pos - math.log(den))
    assert got_mnrl == pytest.approx(want_mnrl / 4, rel=1e-9)


def test_pairs_without_same_tower_is_eq2_infonce(batch) -> None:
    q, p, _ = batch
    eq2 = GeckoLoss(model=None, temperature=TAU, same_tower=False).compute_loss_from_embeddings([q, p]).item()
    mnrl = MultipleNegativesRankingLoss(model=None, scale=1 / TAU)
    mnrl = mnrl.compute_loss_from_embeddings([q, p], None).item()
    assert eq2 == pytest.approx(mnrl, rel=1e-9)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="temperature"):
        GeckoLoss(model=None, temperature=0)
    with pytest.raises(ValueError, match="columns"):
        GeckoLoss(model=None).compute_loss_from_embeddings([torch.zeros(2, 3)])


# -- real MiniLM: GradCache parity, Matryoshka wrapping ----------------------------------------------

# (task, query, positive passage, hard negative passage): real-looking news snippets, written for this test.
ROWS = [
    ("search result", "bushfire near Hill Top",
     "Strong winds pushed a bushfire towards the town of Hill Top, and residents left for Mittagong.",
     "The cricket test ended in a draw after rain on the final day."),
    ("question answering", "who leads the Palestinian Authority?",
     "Yasser Arafat met envoys in Ramallah as Israel kept its troops around the city.",
     "The share market closed higher on strong bank results."),
    ("fact checking", "Qantas cut jobs",
     "The airline Qantas announced it would shed staff after a fall in passenger numbers.",
     "Firefighters contained a blaze in the Blue Mountains overnight."),
    ("search result", "anthrax letters investigation",
     "US investigators examined letters containing anthrax spores sent to politicians.",
     "A new airport terminal opened in Sydney."),
    ("question answering", "where did the storm hit?",
     "A storm cell moved east across the Blue Mountains with hail and heavy rain.",
     "The Reserve Bank kept interest rates on hold."),
    ("fact checking", "the Taliban lost Kandahar",
     "Afghan opposition forces said the Taliban had surrendered Kandahar.",
     "Swimmers set records at the national championships."),
]
TEXTS = [(f"task: {t} | query: {q}", f"title: none | text: {p}", f"title: none | text: {n}")
         for t, q, p, n in ROWS]


@pytest.fixture(scope="module")
def minilm_eval(one_torch_thread):
    from gecko_distill.embedding import load_embedder

    model = load_embedder("all-MiniLM-L6-v2", device="cpu", max_seq_length=48)
    model.eval()  # dropout off: the plain and cached losses must see identical forward passes
    return model


def _features(model, n: int = 6):
    cols = list(zip(*TEXTS[:n], strict=True))
    return [model.preprocess(list(c)) for c in cols]


def _loss_and_grads(model, loss_fn, n: int = 6) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = loss_fn(_features(model, n), None)
    loss.backward()
    grads = {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None}
    return loss.item(), grads


@pytest.mark.parametrize("matryoshka", [False, True])
def test_cached_gecko_loss_equals_plain_value_and_gradients(minilm_eval, matryoshka: bool) -> None:
    def wrap(loss):
        return MatryoshkaLoss(minilm_eval, loss, [384, 128, 64]) if matryoshka else loss

    plain_value, plain_grads = _loss_and_grads(minilm_eval, wrap(GeckoLoss(minilm_eval)))
    cached = wrap(CachedGeckoLoss(minilm_eval, mini_batch_size=2))
    cached_value, cached_grads = _loss_and_grads(minilm_eval, cached)
    assert cached_value == pytest.approx(plain_value, abs=1e-5)
    assert plain_grads.keys() == cached_grads.keys() and len(plain_grads) > 50
    for name, g in plain_grads.items():
        torch.testing.assert_close(cached_grads[name], g, atol=1e-5, rtol=1e-4, msg=name)


def test_cached_loss_embeds_at_most_mini_batch_rows_with_a_graph(minilm_eval) -> None:
    """Peak activation memory is bounded: no forward pass with a graph sees more than mini_batch_size rows."""
    seen: list[tuple[int, bool]] = []
    hook = minilm_eval[0].register_forward_pre_hook(
        lambda mod, args: seen.append((args[0]["input_ids"].shape[0], torch.is_grad_enabled())))
    try:
        _loss_and_grads(minilm_eval, CachedGeckoLoss(minilm_eval, mini_batch_size=2))
        cached = list(seen)
        seen.clear()
        _loss_and_grads(minilm_eval, GeckoLoss(minilm_eval))
    finally:
        hook.remove()
    assert max(n for n, grad in cached if grad) == 2
    assert max(n for n, grad in seen if grad) >= 6   # the plain loss holds the whole batch's graph


def test_matryoshka_warns_when_dims_omit_the_full_dim(minilm_eval, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="gecko_distill.training.loop"):
        loss, dims = build_loss(minilm_eval, TrainingConfig(matryoshka_dims=[256, 64]), same_tower=True)
    assert dims == [256, 64]
    assert any("omit the model's full dimension 384" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gecko_distill.training.loop"):
        _, dims = build_loss(minilm_eval, TrainingConfig(), same_tower=True)
    assert dims == [384, 256, 128, 64]
    assert not [r for r in caplog.records if r.name == "gecko_distill.training.loop"]


def test_matryoshka_dims_larger_than_the_model_are_a_config_error(minilm_eval) -> None:
    with pytest.raises(ConfigError, match=r"exceed the model's embedding dimension 384"):
        # a base whose width the config cannot read, so the check falls to the loaded model
        build_loss(minilm_eval, TrainingConfig(base_model="org/unknown", matryoshka_dims=[768, 384]), same_tower=True)


def test_no_matryoshka_and_gradcache_selection(minilm_eval) -> None:
    cfg = TrainingConfig(matryoshka_dims=[], mini_batch_size=4)
    loss, dims = build_loss(minilm_eval, cfg, same_tower=True)
    assert isinstance(loss, CachedGeckoLoss) and dims == []
    loss, _ = build_loss(minilm_eval, TrainingConfig(), same_tower=False)
    assert isinstance(loss, MatryoshkaLoss) and isinstance(loss.loss, GeckoLoss) and not loss.loss.same_tower
