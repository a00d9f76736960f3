"""Corpus readers: every bad-row kind is reported with file:line, counted and skipped."""

from __future__ import annotations

import gzip
import json

import pytest

from gecko_distill.config import CorpusConfig
from gecko_distill.corpus import normalize_text, read_corpus, truncate_words
from gecko_distill.errors import InputError

GOOD = "A perfectly ordinary passage about rivers, deltas and the sediment they carry downstream."


def _write_bad_jsonl(path):
    lines = [
        json.dumps({"_id": "a", "title": "T", "text": GOOD}).encode(),
        b'{"_id": "b", "text": "unterminated',                                  # invalid JSON
        json.dumps({"_id": "c", "title": "no text"}).encode(),                   # missing text
        json.dumps({"_id": "d", "text": "   "}).encode(),                        # empty
        b'{"_id": "e", "text": "bad \xff\xfe bytes in a passage long enough to count"}',  # bad encoding
        json.dumps({"_id": "f", "text": "x" * 50_000}).encode(),                 # huge
        json.dumps({"_id": "a", "text": GOOD + " different"}).encode(),          # duplicate id
        json.dumps({"_id": "g", "title": "T", "text": GOOD}).encode(),           # duplicate text
        json.dumps({"_id": "h", "text": 42}).encode(),                           # wrong type
        json.dumps({"_id": "i", "text": "short"}).encode(),                      # too short
        json.dumps([1, 2]).encode(),                                             # not an object
        json.dumps({"id": 7, "text": "Ünïcode text\u0000 with a control char, long enough to keep."}).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_every_bad_row_kind_is_reported_with_location(tmp_path):
    f = tmp_path / "corpus.jsonl"
    _write_bad_jsonl(f)
    passages, report = read_corpus(CorpusConfig(path=str(f)))
    assert [p.id for p in passages] == ["a", "7"]
    assert passages[1].text == "Ünïcode text with a control char, long enough to keep."
    assert report.rows_read == 12
    assert report.rows_kept == 2
    assert dict(report.dropped) == {"invalid_json": 2, "missing_text": 1, "empty_text": 1, "bad_encoding": 1,
                                    "too_long": 1, "duplicate_id": 1, "duplicate_text": 1, "bad_type": 1,
                                    "too_short": 1}
    locs: dict[str, str] = {}
    for b in report.examples:
        locs.setdefault(b.reason, b.location)
    assert locs["invalid_json"] == f"{f}:2"
    assert locs["bad_encoding"] == f"{f}:5"
    assert locs["duplicate_id"] == f"{f}:7"


def test_nothing_usable_fails_with_counts(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text('{"_id": 1, "body": "x"}\n{oops\n')
    with pytest.raises(InputError, match=r"no usable passages .*2 rows read.*missing_text.*text_field"):
        read_corpus(CorpusConfig(path=str(f)))


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(InputError, match="corpus not found"):
        read_corpus(CorpusConfig(path=str(tmp_path / "nope.jsonl")))
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(InputError, match="set corpus.format"):
        read_corpus(CorpusConfig(path=str(tmp_path / "data.txt")))


def test_beir_folder_gz_csv_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    beir = tmp_path / "beir"
    beir.mkdir()
    with gzip.open(beir / "corpus.jsonl.gz", "wt") as g:
        g.write(json.dumps({"_id": "d1", "title": "Rivers", "text": GOOD}) + "\n")
    ps, _ = read_corpus(CorpusConfig(path=str(beir)))
    assert ps[0].id == "d1" and ps[0].title == "Rivers"

    csv = tmp_path / "c.csv"
    csv.write_text('id,text\n1,"' + GOOD + '"\n2,\n')
    ps, rep = read_corpus(CorpusConfig(path=str(csv)))
    assert [p.id for p in ps] == ["1"] and rep.dropped == {"empty_text": 1}

    pq.write_table(pa.Table.from_pylist([{"doc": "p1", "body": GOOD}]), tmp_path / "c.parquet")
    ps, _ = read_corpus(CorpusConfig(path=str(tmp_path / "c.parquet"), id_field="doc", text_field="body"))
    assert ps[0].id == "p1"


def test_demo_corpora_and_limit():
    ps, rep = read_corpus(CorpusConfig(path="demo:gensim-wiki", limit=30))
    assert len(ps) == 30 and all(p.title for p in ps)
    bg, _ = read_corpus(CorpusConfig(path="demo:gensim-bgwiki"))
    assert len(bg) >= 10 and any("\u0400" <= ch <= "\u04ff" for ch in bg[0].text)  # Cyrillic
    with pytest.raises(InputError, match="valid: demo:gensim-wiki"):
        read_corpus(CorpusConfig(path="demo:nope"))


def test_normalisation_is_unicode_safe():
    assert normalize_text("Cafe\u0301  \t au\u00a0lait\x07") == "Café au lait"  # NFC, NBSP, control char
    assert truncate_words("one two three four", 2) == "one two"
    assert truncate_words("日本語の文章" * 20, 10) == ("日本語の文章" * 20)[:30]
