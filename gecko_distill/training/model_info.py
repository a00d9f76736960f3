"""What a trained model directory says about itself: ``MODEL_DIR/gecko_distill.json``.

sentence-transformers' own files carry the prompts (``config_sentence_transformers.json``); this file adds
what evaluation and reports need and sentence-transformers has no slot for: the Matryoshka dims the model
was trained at, whether it expects the unified formats, the loss settings and the base model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gecko_distill.artifacts import atomic_write_text
from gecko_distill.embedding.formats import MODEL_INFO_FILE, InputMode, document_prompt, query_prompt, recorded_mode

__all__ = ["MODEL_INFO_FILE", "ModelInfo", "default_prompts", "read_model_info", "write_model_info"]

#: Task strings of the paper's evaluation instructions (Table 9); each becomes a named model prompt.
EVAL_TASKS = ("search result", "question answering", "fact checking", "semantic similarity", "classification")


def default_prompts(*, unified: bool = True, mode: InputMode | None = None) -> dict[str, str]:
    """Model prompts: ``query`` / ``document`` (used by ``encode_query`` / ``encode_document``) plus one
    query-side prompt per Table 9 task string, e.g. ``prompt_name="fact checking"``.

    A model trained on raw text (``mode="none"``) ships no prompts: it is used, and evaluated, as its base was.
    """
    m = mode or ("unified" if unified else "plain")
    if m == "none":
        return {}
    prompts = {"query": query_prompt("search result", mode=m), "document": document_prompt(None, mode=m)}
    prompts.update({t: query_prompt(t, mode=m) for t in EVAL_TASKS})
    return prompts


@dataclass(frozen=True)
class ModelInfo:
    """The training facts of a model directory."""

    matryoshka_dims: list[int]
    embedding_dim: int
    unified_format: bool = True  # kept for readers of format_version 1; input_format says it all
    input_format: str = "unified"
    stage: str = "train"
    base_model: str = ""
    loss: dict[str, Any] = field(default_factory=dict)
    prompts: dict[str, str] = field(default_factory=dict)
    format_version: int = 1


def write_model_info(model_dir: str | Path, info: ModelInfo) -> Path:
    path = Path(model_dir) / MODEL_INFO_FILE
    atomic_write_text(path, json.dumps(asdict(info), indent=2, ensure_ascii=False))
    return path


def read_model_info(model_dir: str | Path) -> ModelInfo | None:
    """The info of a gecko-distill model directory, or ``None`` for any other model (path or hub name)."""
    path = Path(model_dir) / MODEL_INFO_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    known = set(ModelInfo.__dataclass_fields__)
    data["input_format"] = recorded_mode(data)
    return ModelInfo(**{k: v for k, v in data.items() if k in known})
