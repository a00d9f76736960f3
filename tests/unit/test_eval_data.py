"""Evaluation-set readers, kind detection, subsets and Gecko's evaluation formats (no model needed).

Run: ``.venv/bin/pytest tests/unit/test_eval_data.py``.
"""

from __future__ import annotations

import gzip
import json
from typing import TYPE_CHECKING

import pytest

from gecko_distill.corpus.eval_sets import LabelledSet, PairSet, RetrievalSet, detect_kind, load_eval_set
from gecko_distill.embedding.task_strings import task_string_for
from gecko_distill.errors import ConfigError, InputError
from gecko_distill.evaluation.config import EvaluationConfig
from gecko_distill.evaluation.encoder import halving_dims, resolve_dims
from gecko_distill.evaluation.formatting import InputFormat

if TYPE_CHECKING:
    from pathlib import Path


def _jsonl(path: Path, rows: list[dict], *, gz: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def make_beir(root: Path, *, n_docs: int = 20, gz: bool = True) -> Path:
    _jsonl(
        root / ("corpus.jsonl.gz" if gz else "corpus.jsonl"),
        [{"_id": f"d{i}", "title": f"T{i}" if i % 2 else "", "text": f"document {i}"} for i in range(n_docs)],
        gz=gz,
    )
    _jsonl(root / "queries.jsonl", [{"_id": f"q{i}", "text": f"query {i}"} for i in range(8)])
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(5)) + "q0\td7\t2\n"
    )
    return root


def test_beir_folder_reads_only_judged_queries(tmp_path: Path) -> None:
    s = load_eval_set(make_beir(tmp_path / "SciFact"))
    assert isinstance(s, RetrievalSet)
    assert (s.name, s.kind, s.split) == ("scifact", "retrieval", "test")
    assert [q for q, _ in s.queries] == ["q0", "q1", "q2", "q3", "q4"]  # q5..q7 have no qrels in this split
    assert s.qrels["q0"] == {"d0": 1, "d7": 2}
    assert s.corpus[1] == ("d1", "T1", "document 1") and s.corpus[0][1] == ""


def test_retrieval_subsets_keep_judged_documents_and_are_seeded(tmp_path: Path) -> None:
    root = make_beir(tmp_path / "b", n_docs=200)
    a = load_eval_set(root, limit=3, max_corpus=10, seed=1)
    b = load_eval_set(root, limit=3, max_corpus=10, seed=1)
    assert a.queries == b.queries and a.corpus == b.corpus  # same items for base and trained
    assert len(a.queries) == 3 and len(a.corpus) == 10
    ids = [d for d, _, _ in a.corpus]
    assert {d for rel in a.qrels.values() for d in rel} <= set(ids)
    assert ids == sorted(ids, key=lambda d: int(d[1:]))  # original order kept
    assert len(a.notes) == 2


def test_sts_tsv_is_read_without_quote_processing(tmp_path: Path) -> None:
    d = tmp_path / "sts"
    d.mkdir()
    # An unbalanced quote: a CSV reader would swallow the next line into this field.
    (d / "test.tsv").write_text(
        'sentence1\tsentence2\tscore\nHe said "hi\tShe left.\t1.5\nA b\tC d\t4\n', encoding="utf-8"
    )
    s = load_eval_set(d)
    assert isinstance(s, PairSet) and s.kind == "sts"
    assert s.pairs == [('He said "hi', "She left."), ("A b", "C d")] and s.gold == [1.5, 4.0]


def test_sts_bad_row_names_file_and_line(tmp_path: Path) -> None:
    d = tmp_path / "sts"
    d.mkdir()
    (d / "test.tsv").write_text("a\tb\t1\nonly one field\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"test\.tsv:2: expected"):
        load_eval_set(d)


def test_classification_and_clustering_from_one_folder(tmp_path: Path) -> None:
    d = tmp_path / "Banking"
    _jsonl(d / "train.jsonl", [{"text": f"t{i}", "label": f"l{i % 3}"} for i in range(30)])
    _jsonl(d / "test.jsonl", [{"text": f"x{i}", "label": f"l{i % 3}"} for i in range(12)])
    assert detect_kind(d) == "classification"
    c = load_eval_set(d)
    assert isinstance(c, LabelledSet) and c.split == "test" and len(c.train_texts) == 30
    k = load_eval_set(d, kind="clustering", limit=6)
    assert k.kind == "clustering" and k.size == 6 and not k.train_texts
    with pytest.raises(InputError, match="cannot be evaluated as retrieval"):
        load_eval_set(d, kind="retrieval")


def test_pair_classification_and_bad_labels(tmp_path: Path) -> None:
    d = tmp_path / "mrpc"
    _jsonl(d / "test.jsonl", [{"sentence1": "a", "sentence2": "b", "label": i % 2} for i in range(4)])
    assert detect_kind(d / "test.jsonl") == "pair_classification"
    s = load_eval_set(d)
    assert s.kind == "pair_classification" and s.gold == [0.0, 1.0, 0.0, 1.0]
    _jsonl(d / "dev.jsonl", [{"sentence1": "a", "sentence2": "b", "label": 3}])
    with pytest.raises(InputError, match=r"dev\.jsonl:1: pair-classification label must be 0 or 1"):
        load_eval_set(d, split="dev")


def test_invalid_json_and_unknown_layouts_are_clear(tmp_path: Path) -> None:
    d = tmp_path / "cls"
    d.mkdir()
    (d / "train.jsonl").write_text('{"text": "a", "label": "x"}\n', encoding="utf-8")
    (d / "test.jsonl").write_text('{"text": "a", "label": "x"}\n{broken\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"test\.jsonl:2: invalid JSON"):
        load_eval_set(d)
    with pytest.raises(InputError, match="not found"):
        load_eval_set(tmp_path / "missing")
    with pytest.raises(InputError, match="split 'dev' not found"):
        load_eval_set(d, split="dev")


def test_paper_task_strings_and_formats() -> None:
    assert task_string_for("scifact", "retrieval") == "fact checking"  # Table 9
    assert task_string_for("mydocs", "retrieval") == "search result"
    assert task_string_for("stsb", "sts") == "semantic similarity"
    assert task_string_for("banking77", "classification") == "classification"
    assert task_string_for("scifact", "retrieval", {"scifact": "claims"}) == "claims"
    f = InputFormat.for_set("scifact", "retrieval", mode="unified", task="fact checking")
    assert f.query("Aspirin helps.") == "task: fact checking | query: Aspirin helps."
    assert f.document("Body.", "Title") == "title: Title | text: Body."
    assert f.document("Body.") == "title: none | text: Body."
    q = InputFormat.for_set("quora", "retrieval", mode="unified", task="search result")
    assert q.document("How?", "") == "task: search result | query: How?"  # symmetric (Table 9 ✓)
    raw = InputFormat.for_set("scifact", "retrieval", mode="none", task="fact checking")
    assert raw.query("Q") == "Q" and raw.document("Body.", "Title") == "Title Body."  # as MTEB feeds it
    plain = InputFormat.for_set("x", "sts", mode="plain", task="semantic similarity")
    assert plain.query("S") == "semantic similarity S"


def test_dims_resolution(tmp_path: Path) -> None:
    assert halving_dims(384) == [384, 192, 96]
    assert halving_dims(768) == [768, 384, 192, 96]
    model = tmp_path / "m"
    model.mkdir()
    assert resolve_dims(str(model), 384, None) == [384, 192, 96]
    (model / "gecko_distill.json").write_text(
        json.dumps({"matryoshka_dims": [256, 128, 64], "embedding_dim": 384})
    )
    assert resolve_dims(str(model), 384, None) == [384, 256, 128, 64]  # full dim always included
    assert resolve_dims(str(model), 384, [64, 384]) == [384, 64]
    with pytest.raises(ConfigError, match="exceed the model's embedding size 384"):
        resolve_dims(str(model), 384, [512])


def test_config_rejects_unknown_keys_and_bad_dims() -> None:
    from gecko_distill.config import validate_config

    with pytest.raises(ConfigError, match="did you mean 'limit'"):
        validate_config({"limt": 3}, EvaluationConfig)
    with pytest.raises(ConfigError, match="dims must be positive"):
        validate_config({"dims": [0]}, EvaluationConfig)


def test_public_names_resolve_lazily() -> None:
    import gecko_distill.evaluation as ev

    assert ev.__all__ == sorted(ev.__all__)
    for name in ev.__all__:
        assert getattr(ev, name) is not None
    with pytest.raises(AttributeError):
        _ = ev.not_a_name


def test_classification_never_scores_its_training_split(tmp_path: Path) -> None:
    d = tmp_path / "only_train"
    _jsonl(d / "train.jsonl", [{"text": f"t{i}", "label": f"l{i % 2}"} for i in range(6)])
    with pytest.raises(InputError, match="split other than train.jsonl"):
        load_eval_set(d)
    assert load_eval_set(d, kind="clustering").split == "train"
