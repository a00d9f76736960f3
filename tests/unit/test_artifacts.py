"""Stage directories: manifest last, shards atomic, fingerprint change restarts the stage."""

from __future__ import annotations

import json

import pytest

from gecko_distill.artifacts import StageDir, atomic_write_text, fingerprint
from gecko_distill.errors import StageIncompleteError


def test_manifest_written_last_and_complete(tmp_path):
    st = StageDir(tmp_path / "s", "fret")
    st.prepare("fp1")
    st.write_shard(0, [{"a": 1}])
    st.write_shard(1, [{"a": 2, "d": {"x": 1}}])
    assert not st.is_complete()
    with pytest.raises(StageIncompleteError, match="rerun the same command to resume"):
        st.require_complete()
    rows = st.read_shards(2)
    st.finalize(rows, fp="fp1", config={}, summary={"n": 2})
    assert st.is_complete("fp1") and not st.is_complete("other")
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert m["rows"] == 2
    # Every file named in the manifest exists and is older than (or as old as) the manifest.
    for name in m["files"]:
        assert (tmp_path / "s" / name).stat().st_mtime <= (tmp_path / "s" / "manifest.json").stat().st_mtime
    import datasets

    ds = datasets.load_dataset("parquet", data_files=str(st.parquet_path), split="train")
    assert ds.num_rows == 2


def test_changed_fingerprint_clears_old_shards(tmp_path):
    st = StageDir(tmp_path / "s", "g")
    st.prepare("a")
    st.write_shard(0, [{"x": 1}])
    st.prepare("a")
    assert st.has_shard(0)  # same fingerprint: resume keeps the shard
    st.prepare("b")
    assert not st.has_shard(0)


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_text(tmp_path / "f.txt", "hello")
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
