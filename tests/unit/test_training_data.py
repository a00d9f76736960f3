"""Training data: FRet formatting, classification triples with ids, NLI, pairs, weights, pre-finetuning pairs.

Run: ``.venv/bin/pytest tests/unit/test_training_data.py`` (no model is loaded; a few seconds).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
from sentence_transformers.base.sampler import DefaultBatchSampler
from torch.utils.data import ConcatDataset

from gecko_distill.artifacts import StageDir
from gecko_distill.config import validate_config
from gecko_distill.errors import ConfigError, InputError, StageIncompleteError
from gecko_distill.records import Passage
from gecko_distill.training import MixSource, TrainingConfig, parse_mix_spec
from gecko_distill.training.data import (
    balance_task_types,
    build_training_data,
    classification_triples,
    format_fret_rows,
    nli_triples,
    pair_rows,
    read_fret,
)
from gecko_distill.training.prefinetuning import self_supervised_pairs, split_first_sentence, split_sentences
from gecko_distill.training.sampling import WeightedSourceBatchSampler


def _fret_row(i: int, task_type: str = "question_answering", **kw) -> dict:
    row = {"task_type": task_type, "task": "Given a query, find a passage that has the answer",
           "query": f"who built bridge {i}?", "positive_id": f"p{i}", "positive_title": f"Bridge {i}",
           "positive_text": f"Bridge {i} was built by engineers in 1890.", "negative_id": f"n{i}",
           "negative_title": "", "negative_text": f"Tunnel {i} is under the river.", "seed_id": f"p{i}",
           "positive_moved": False, "ranks": {}, "scores": {}, "candidates": []}
    row.update(kw)
    return row


def _write_fret(tmp_path: Path, rows: list[dict]) -> Path:
    stage = StageDir(tmp_path / "fret", "fret")
    stage.prepare("test")
    stage.finalize(rows, fp="test", config={}, summary={})
    return stage.path


# -- FRet -----------------------------------------------------------------------------------------------

def test_fret_rows_use_unified_formats_from_raw_fields() -> None:
    cols, dropped = format_fret_rows([_fret_row(1), _fret_row(2, "sentence_similarity",
                                                              task="Find a sentence with the same meaning")])
    assert not dropped
    assert cols["anchor"][0] == ("task: Given a query, find a passage that has the answer | "
                                 "query: who built bridge 1?")
    assert cols["positive"][0] == "title: Bridge 1 | text: Bridge 1 was built by engineers in 1890."
    assert cols["negative"][0] == "title: none | text: Tunnel 1 is under the river."
    # Symmetric task types format the documents like queries, with the same task.
    assert cols["positive"][1] == ("task: Find a sentence with the same meaning | "
                                   "query: Bridge 2 was built by engineers in 1890.")
    assert cols["negative"][1].startswith("task: Find a sentence with the same meaning | query: Tunnel 2")


def test_plain_format_switch_concatenates() -> None:
    cols, _ = format_fret_rows([_fret_row(1)], mode="plain")
    assert cols["anchor"][0] == "Given a query, find a passage that has the answer who built bridge 1?"
    assert cols["positive"][0] == "Bridge 1 Bridge 1 was built by engineers in 1890."
    assert cols["negative"][0] == "Tunnel 1 is under the river."


def test_fret_rows_without_negative_are_dropped_or_pairs() -> None:
    cols, dropped = format_fret_rows([_fret_row(1), _fret_row(2, negative_text="")])
    assert len(cols["anchor"]) == 1 and dropped == Counter(no_negative=1)
    cols, _ = format_fret_rows([_fret_row(1)], use_negatives=False)
    assert set(cols) == {"anchor", "positive"}


def _cands(i: int, n: int = 5) -> list[dict]:
    # The seed p{i} is the positive at fused rank 1; c{i}_r is the candidate at fused rank r; the selected
    # negative is the lowest (rank n).
    out = [{"id": f"p{i}", "title": f"Bridge {i}", "text": "seed", "rank_fused": 1}]
    out += [{"id": f"c{i}_{r}", "title": "", "text": f"candidate at rank {r}", "rank_fused": r}
            for r in range(2, n + 1)]
    return out


def test_extra_hard_negatives_come_from_the_bottom_of_the_fused_ranking() -> None:
    rows = [_fret_row(i, negative_id=f"c{i}_5", negative_text="candidate at rank 5", candidates=_cands(i))
            for i in range(2)]
    cols, dropped = format_fret_rows(rows, mode="none", hard_negatives=3)
    assert not dropped
    assert [c for c in cols if c.startswith("negative")] == ["negative", "negative_2", "negative_3"]
    # The selected negative stays first; the extras climb from rank 4, never reaching the positive.
    assert cols["negative"][0] == "candidate at rank 5"
    assert cols["negative_2"][0] == "candidate at rank 4" and cols["negative_3"][0] == "candidate at rank 3"
    # All four non-positive candidates, then a row with too few candidates is dropped and counted.
    cols, _ = format_fret_rows(rows, mode="none", hard_negatives=4)
    assert cols["negative_4"] == ["candidate at rank 2"] * 2
    short = _fret_row(9, negative_id="c9_3", candidates=_cands(9, n=3))
    cols, dropped = format_fret_rows(rows + [short], mode="none", hard_negatives=4)
    assert len(cols["anchor"]) == 2 and dropped == Counter(few_candidates=1)
    # Default: one negative column, whatever the candidates.
    cols, _ = format_fret_rows(rows, mode="none")
    assert "negative_2" not in cols


def test_extra_hard_negatives_need_negatives() -> None:
    with pytest.raises(ValueError, match="hard_negatives = 2 needs use_negatives"):
        TrainingConfig(hard_negatives=2, use_negatives=False)


def test_bad_fret_row_names_file_and_line() -> None:
    with pytest.raises(InputError, match=r"fret.jsonl:2: missing or empty 'query'"):
        format_fret_rows([_fret_row(1), _fret_row(2, query="  ")])


def test_read_fret_requires_a_finished_stage(tmp_path: Path) -> None:
    (tmp_path / "fret").mkdir()
    (tmp_path / "fret" / "fret.jsonl").write_text(json.dumps(_fret_row(1)) + "\n")
    with pytest.raises(StageIncompleteError, match="no manifest.json"):
        read_fret(tmp_path / "fret")
    _write_fret(tmp_path, [_fret_row(1), _fret_row(2)])
    rows, manifest = read_fret(tmp_path)          # the run directory resolves to its fret/ stage
    assert len(rows) == 2 and manifest["rows"] == 2


def test_uniform_task_sampling_balances_types() -> None:
    rows = [_fret_row(i) for i in range(6)] + [_fret_row(10 + i, "fact_checking") for i in range(2)]
    out = balance_task_types(rows, seed=0)
    assert Counter(r["task_type"] for r in out) == {"question_answering": 6, "fact_checking": 6}


# -- user sources ----------------------------------------------------------------------------------------

LABELLED = [("the film is a delight", "pos"), ("a warm and funny story", "pos"), ("great acting", "pos"),
            ("tedious and silly", "neg"), ("a dull mess", "neg"), ("boring plot", "neg"),
            ("lone text", "odd")]


def _split_id(text: str) -> tuple[str, str]:
    m = re.fullmatch(r"task: classification \| query: (.*) \[([0-9a-f]{8})\]", text)
    assert m, text
    return m.group(1), m.group(2)


def test_classification_triples_share_one_unique_id_per_triple() -> None:
    rows = [{"text": t, "label": y} for t, y in LABELLED]
    cols, skipped = classification_triples(rows, task="classification", mode="unified", seed=3)
    label = dict(LABELLED)
    assert skipped == Counter(classification_singleton_label=1)   # "odd" has no same-label partner
    ids = []
    for a, p, n in zip(cols["anchor"], cols["positive"], cols["negative"], strict=True):
        (xa, ia), (xp, ip), (xn, in_) = map(_split_id, (a, p, n))
        assert ia == ip == in_                     # the same id on x, x+ and x-
        assert label[xa] == label[xp] and xa != xp  # x+ shares the label, is another input
        assert label[xn] != label[xa]               # x- has another label
        ids.append(ia)
    assert len(ids) == 6 and len(set(ids)) == 6      # one unique id per triple
    again, _ = classification_triples(rows, task="classification", mode="unified", seed=3)
    other, _ = classification_triples(rows, task="classification", mode="unified", seed=4)
    assert again == cols and other["anchor"] != cols["anchor"]


def test_classification_needs_two_labels() -> None:
    with pytest.raises(InputError, match="at least two labels"):
        classification_triples([{"text": "a", "label": 1}, {"text": "b", "label": 1}], task="c", mode="unified",
                               seed=0)


def test_nli_premise_entailment_contradiction_symmetric() -> None:
    rows = [{"premise": "A man plays a guitar.", "hypothesis": "A person makes music.",
             "label": "entailment"},
            {"premise": "A man plays a guitar.", "hypothesis": "A man sleeps.", "label": 2},
            {"premise": "A man plays a guitar.", "hypothesis": "He is famous.", "label": "neutral"},
            {"premise": "Kids run outside.", "hypothesis": "Children are outdoors.", "label": 0}]
    cols, skipped = nli_triples(rows, task="semantic similarity", mode="unified", where="nli.jsonl")
    assert cols == {"anchor": ["task: semantic similarity | query: A man plays a guitar."],
                    "positive": ["task: semantic similarity | query: A person makes music."],
                    "negative": ["task: semantic similarity | query: A man sleeps."]}
    assert skipped == Counter(nli_incomplete_premise=1)
    with pytest.raises(InputError, match=r"nli.jsonl:1: label 'maybe'"):
        nli_triples([{"premise": "a", "hypothesis": "b", "label": "maybe"}], task="t", mode="unified",
                    where="nli.jsonl")


def test_pair_rows_and_their_errors() -> None:
    row = {"query": "capital of France", "positive": "Paris is the capital.", "positive_title": "Paris"}
    cols = pair_rows([row], task=None, symmetric=None, mode="unified", where="p.jsonl")
    assert cols == {"anchor": ["task: search result | query: capital of France"],
                    "positive": ["title: Paris | text: Paris is the capital."]}
    with pytest.raises(InputError, match=r"p.jsonl:2: every row of a source must have a 'negative'"):
        pair_rows([{"anchor": "a", "positive": "b", "negative": "c"}, {"anchor": "d", "positive": "e"}],
                  task=None, symmetric=None, mode="unified", where="p.jsonl")


def test_mixture_sources_and_weights(tmp_path: Path) -> None:
    fret = _write_fret(tmp_path, [_fret_row(i) for i in range(4)])
    cls = tmp_path / "sentiment.jsonl"
    cls.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in LABELLED))
    bad = tmp_path / "weird.jsonl"
    bad.write_text(json.dumps({"foo": 1}) + "\n")
    cfg = TrainingConfig(mix=[MixSource(path=str(cls), weight=0.5)], batch_size=4)
    data = build_training_data(fret, cfg)
    assert list(data.datasets) == ["fret", "sentiment"] and data.weights == {"fret": 1.0, "sentiment": 0.5}
    assert data.datasets["sentiment"].column_names == ["anchor", "positive", "negative"]
    assert data.summary["sources"]["sentiment"]["dropped"] == {"classification_singleton_label": 1}
    with pytest.raises(InputError, match=r"weird.jsonl:1: cannot tell the source kind"):
        build_training_data(None, TrainingConfig(mix=[MixSource(path=str(bad))]))


def test_parse_mix_spec_and_config_errors() -> None:
    assert parse_mix_spec("data/nli.jsonl:0.25") == MixSource(path="data/nli.jsonl", weight=0.25)
    assert parse_mix_spec("C:/x/pairs.jsonl") == MixSource(path="C:/x/pairs.jsonl")
    with pytest.raises(ConfigError, match=r"unknown key \(did you mean 'temperature'\?\)"):
        validate_config({"temprature": 0.1}, TrainingConfig)
    with pytest.raises(ConfigError, match="matryoshka_weights needs matryoshka_dims of the same length"):
        validate_config({"matryoshka_dims": [384, 64], "matryoshka_weights": [1.0]}, TrainingConfig)
    with pytest.raises(ConfigError, match="mini_batch_size"):
        validate_config({"batch_size": 8, "mini_batch_size": 16}, TrainingConfig)


def test_weighted_source_sampler_follows_weights_and_keeps_sources_apart() -> None:
    sizes = [40, 40]
    concat = ConcatDataset([list(range(n)) for n in sizes])
    samplers = [DefaultBatchSampler(list(range(n)), batch_size=4, drop_last=False,
                                    generator=torch.Generator(), seed=0) for n in sizes]
    sampler = WeightedSourceBatchSampler(concat, samplers, seed=0, weights=[3.0, 1.0])
    assert len(sampler) == 20
    counts = Counter()
    for epoch in range(10):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == 20
        for b in batches:
            src = {0 if i < 40 else 1 for i in b}
            assert len(src) == 1                       # one source per batch
            counts[src.pop()] += 1
    assert 0.68 < counts[0] / 200 < 0.82               # ≈ 3 / (3 + 1)
    sampler.set_epoch(3)
    assert list(sampler) == list(sampler)              # deterministic per epoch (resume relies on it)


# -- pre-finetuning pairs -----------------------------------------------------------------------------

def test_first_sentence_split_handles_unspaced_scripts() -> None:
    text = "Rain fell. The river rose! Roads closed."
    assert split_first_sentence(text) == ("Rain fell.", "The river rose! Roads closed.")
    assert split_first_sentence("東京は日本の首都です。人口は多い。") == ("東京は日本の首都です。", "人口は多い。")
    assert split_first_sentence("No full stop here") == ("No full stop here", "")


def test_self_supervised_pairs_title_body_once_per_title() -> None:
    ps = [Passage("a1", "Paris is the capital of France. It lies on the Seine river.",
                  "Paris France capital"),
          Passage("a2", "The city has many museums. The Louvre is the largest one.", "Paris France capital"),
          Passage("b1", "Short one.", ""),
          Passage("c1", "Bushfires burned near Sydney today. Crews worked through the night.", "")]
    pairs, skipped = self_supervised_pairs(ps, mode="auto", min_words=3)
    assert pairs == [("Paris France capital", "Paris is the capital of France. It lies on the Seine river.",
                      ""),
                     ("The city has many museums.", "The Louvre is the largest one.", ""),
                     ("Bushfires burned near Sydney today.", "Crews worked through the night.", "")]
    assert skipped == Counter(single_sentence=1)
    pairs, skipped = self_supervised_pairs(ps, mode="title_body")
    assert len(pairs) == 1 and skipped == Counter(repeated_title=1, no_title=2)


def test_inverse_cloze_pairs_take_any_sentence_out_and_keep_the_title() -> None:
    text = "Rain fell all day. The river rose fast. Roads closed at noon. Ok. Schools sent pupils home early."
    ps = [Passage(f"p{i}", text, "Floods" if i % 2 else "") for i in range(40)]
    ps.append(Passage("one", "A single sentence with enough words.", "T"))
    pairs, skipped = self_supervised_pairs(ps, mode="inverse_cloze", min_words=3, seed=1)
    assert skipped == Counter(single_sentence=1) and len(pairs) == 40
    sentences = split_sentences(text)
    for (query, doc, title), p in zip(pairs, ps, strict=False):
        assert query in sentences and query != "Ok."            # too short to be the query
        assert doc == " ".join(s for s in sentences if s != query)   # taken out, order kept
        assert title == p.title
    assert len({q for q, _, _ in pairs}) == 4                   # every long sentence gets drawn
    again, _ = self_supervised_pairs(ps, mode="inverse_cloze", min_words=3, seed=1)
    other, _ = self_supervised_pairs(ps, mode="inverse_cloze", min_words=3, seed=2)
    assert again == pairs and other != pairs                    # seeded
