"""Decontamination: exact and n-gram overlap with evaluation sets, planted near-misses, dropping, the CLI.

Run: ``.venv/bin/pytest tests/unit/test_decontam.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gecko_distill.corpus.eval_sets import LabelledSet, PairSet, RetrievalSet
from gecko_distill.evaluation.decontam import decontaminate_passages, match_tokens, measure_overlap
from gecko_distill.records import Passage

LONG = (
    "the quick brown fox jumps over the lazy dog while the farmer watches from the old wooden fence "
    "near the river"
)  # 21 words
STS_SENTENCE = "A man is playing a large flute on the stage tonight."  # 11 words: one whole gram
SHORT = "A dog runs."  # 3 words: exact match only


def _sets() -> list:
    retr = RetrievalSet(
        name="scifact",
        path=Path(),
        split="test",
        corpus=[("doc1", "", LONG), ("doc2", "", "completely unrelated words about chemistry")],
        queries=[("q1", "Vitamin D deficiency is linked to severe outcomes in elderly patients.")],
        qrels={"q1": {"doc1": 1}},
    )
    sts = PairSet(
        name="stsb", path=Path(), split="test", kind="sts", pairs=[(STS_SENTENCE, SHORT)], gold=[3.0]
    )
    cls = LabelledSet(
        name="banking77",
        path=Path(),
        split="test",
        kind="classification",
        texts=["How do I locate my card?"],
        labels=["card_arrival"],
    )
    return [retr, sts, cls]


def test_tokens_are_normalised_and_unspaced_scripts_split() -> None:
    assert match_tokens("Hello, WORLD!  It's") == ["hello", "world", "it", "s"]
    assert match_tokens("東京タワーは高い tower") == ["東", "京", "タ", "ワ", "ー", "は", "高", "い", "tower"]
    assert match_tokens("Ｆｕｌｌ-width") == ["ｆｕｌｌ", "width"]  # NFC keeps width; case folded


def test_exact_and_ngram_hits_and_near_misses() -> None:
    passages = [
        Passage("p_exact", "how do i LOCATE my card"),  # classification text, case/punctuation differ
        Passage("p_contains_doc", "Intro sentence. " + LONG.upper() + " And more."),  # 13-gram inside
        Passage(
            "p_contains_sts", "Yesterday: a man is playing a large flute on the stage tonight, said Bob."
        ),
        Passage(
            "p_near_miss", "the quick brown fox jumps over the lazy dog while the farmer sleeps"
        ),  # 12 shared words
        Passage("p_short", "Look: a dog runs. Then it sleeps."),  # the 3-word STS sentence inside: not a hit
        Passage("p_clean", "nothing to see here at all"),
    ]
    rep = measure_overlap(
        passages,
        _sets(),
        queries=["A dog runs", "vitamin D deficiency is linked to severe outcomes in elderly patients"],
    )
    hits = {pid: {(h.eval_set, h.field, h.match) for h in hs} for pid, hs in rep.passage_hits.items()}
    assert hits == {
        "p_exact": {("banking77", "text", "exact")},
        "p_contains_doc": {("scifact", "document", "ngram")},
        "p_contains_sts": {("stsb", "sentence", "ngram")},
    }
    qhits = {k: {(h.eval_set, h.field, h.match) for h in hs} for k, hs in rep.query_hits.items()}
    assert qhits == {"0": {("stsb", "sentence", "exact")}, "1": {("scifact", "query", "exact")}}
    s = rep.summary()
    assert s["passages_overlapping"] == 3 and s["queries_overlapping"] == 2
    assert s["eval_sizes"] == {
        "scifact": {"query": 1, "document": 2},
        "stsb": {"sentence": 2},
        "banking77": {"text": 1},
    }
    assert s["passage_counts"]["scifact"]["document"] == {"exact": 0, "ngram": 1, "any": 1}
    assert "How do I locate" not in json.dumps(rep.to_dict())  # evaluation text is never copied out


def test_shorter_ngram_catches_the_near_miss() -> None:
    rep = measure_overlap(
        [Passage("p", "the quick brown fox jumps over the lazy dog while the farmer sleeps")], _sets(), n=8
    )
    assert "p" in rep.passage_hits


def test_drop_keeps_order_and_spares_corpus_documents_by_default() -> None:
    passages = [Passage("a", LONG), Passage("b", "how do I locate my card?"), Passage("c", "clean text here")]
    kept, rep = decontaminate_passages(passages, _sets())
    assert [p.id for p in kept] == ["a", "c"] and rep.dropped == ["b"]
    kept, rep = decontaminate_passages(passages, _sets(), drop_fields=("document", "text"))
    assert [p.id for p in kept] == ["c"] and rep.dropped == ["a", "b"]
    kept, _ = decontaminate_passages([{"id": "x", "text": LONG}], _sets(), drop_fields=("document",))
    assert kept == []


def test_decontam_cli(tmp_path: Path) -> None:
    from gecko_distill.cli import app

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"_id": f"p{i}", "text": t}) + "\n"
            for i, t in enumerate(["How do I locate my card?", "a clean passage about birds and trees"])
        )
    )
    ev = tmp_path / "banking"
    ev.mkdir()
    for split in ("train", "test"):
        (ev / f"{split}.jsonl").write_text(
            json.dumps({"text": "How do I locate my card?", "label": "a"})
            + "\n"
            + json.dumps({"text": "Where is my money", "label": "b"})
            + "\n"
        )
    queries = tmp_path / "generation.jsonl"
    queries.write_text(
        json.dumps({"query": "where is my money"}) + "\n" + json.dumps({"query": "birds"}) + "\n"
    )
    out, kept = tmp_path / "rep.json", tmp_path / "kept.jsonl"
    res = CliRunner().invoke(
        app,
        [
            "decontam",
            "--corpus",
            str(corpus),
            "--eval",
            str(ev),
            "--queries",
            str(queries),
            "--out",
            str(out),
            "--kept-out",
            str(kept),
        ],
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert (
        rep["passages_overlapping"] == 1 and rep["queries_overlapping"] == 1 and rep["dropped_ids"] == ["p0"]
    )
    assert [json.loads(line)["_id"] for line in kept.read_text().splitlines()] == ["p1"]
    assert "passages overlapping: 1 / 2" in res.output


def test_decontaminate_accepts_folders_and_checks_queries(tmp_path: Path) -> None:
    ev = tmp_path / "sts"
    ev.mkdir()
    (ev / "test.tsv").write_text(f"{STS_SENTENCE}\t{SHORT}\t2.0\n", encoding="utf-8")
    kept, rep = decontaminate_passages(
        [Passage("p", "Intro. " + STS_SENTENCE)], [ev, str(ev)], queries=["a dog runs!"]
    )
    assert kept == [] and rep.dropped == ["p"]
    assert rep.summary()["queries_overlapping"] == 1
