"""``docs/config.md``, generated from the pydantic config models: every key, its type, default and meaning.

The page is a walk over :class:`~gecko_distill.config.PipelineConfig`'s ``model_fields``: a field whose type
is a config model becomes a TOML table (``[llm]``), a list of models an array of tables (``[[training.mix]]``),
and recursion goes as deep as the models do. A table still typed as a plain dict is documented by the model
that validates it when :data:`UNTYPED_TABLES` names one, else it is listed as "see ...". Nothing here is
written by hand, so regenerating (``gecko-distill config-docs``) is all a new key needs; ``tests/unit/
test_config_docs.py`` fails when the checked-in page is stale.

Scope: TOML-facing keys only; validators' cross-field rules live in the field descriptions.
"""

from __future__ import annotations

import importlib
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from gecko_distill._markdown import markdown_cell

__all__ = ["CONFIG_DOC_PATH", "UNTYPED_TABLES", "ConfigKey", "collect_keys", "markdown_cell", "render_config_docs",
           "render_type", "write_config_docs"]

#: Where the generated page lives, relative to the repository root.
CONFIG_DOC_PATH = Path("docs") / "config.md"

#: Tables that :class:`PipelineConfig` keeps as raw dicts but a stage validates with its own model
#: (``module:Class``). Once such a table is typed in ``PipelineConfig`` the walk finds it and this entry is unused.
UNTYPED_TABLES: dict[str, str] = {
    "training": "gecko_distill.training.config:TrainingConfig",
    "evaluation": "gecko_distill.evaluation.config:EvaluationConfig",
}


@dataclass(frozen=True)
class ConfigKey:
    """One documented key: its table (``""`` = top level), name, rendered type, default and description."""

    table: str
    name: str
    type: str
    default: str
    description: str


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """``(X, is_list)`` when ``tp`` is a config model ``X``, ``X | None`` or ``list[X]``; else ``(None, False)``."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    origin = typing.get_origin(tp)
    if _is_model(tp):
        return tp, False
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _unwrap(args[0])
    if origin is list and len(args) == 1 and _is_model(args[0]):
        return args[0], True
    return None, False


def _is_dict(tp: Any) -> bool:
    if typing.get_origin(tp) is dict or tp is dict:
        return True
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_is_dict(a) for a in typing.get_args(tp) if a is not type(None))
    return False


def render_type(tp: Any) -> str:
    """A short, stable spelling of an annotation: ``int | None``, ``"auto" | "exact"``, ``list[str]``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is type(None):
        return "None"
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin is typing.Annotated:
        return render_type(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(render_type(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(render_type(a) for a in args)}]"
    return getattr(tp, "__name__", str(tp))


def _render_default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if isinstance(value, BaseModel):
        return "(table)"
    return json.dumps(value, ensure_ascii=False) if value is not None else "unset"


def _load(ref: str) -> type[BaseModel]:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def collect_keys(model: type[BaseModel], table: str = "", *, untyped: dict[str, str] | None = None,
                 ) -> tuple[list[ConfigKey], dict[str, tuple[type[BaseModel], str]]]:
    """Every key of ``model`` and its sub-tables, in declaration order.

    Returns:
        The keys, and per table path the model documenting it and its TOML header (``[llm]``, ``[[training.mix]]``).
    """
    untyped = UNTYPED_TABLES if untyped is None else untyped
    keys: list[ConfigKey] = []
    tables: dict[str, tuple[type[BaseModel], str]] = {table: (model, "")}
    for name, info in model.model_fields.items():
        path = f"{table}.{name}" if table else name
        sub, is_list = _unwrap(info.annotation)
        ref = untyped.get(path) if sub is None and _is_dict(info.annotation) else None
        if ref is not None:
            sub = _load(ref)
        if sub is not None:
            label = f"[[{path}]]" if is_list else f"[{path}]"
            desc = info.description or (sub.__doc__ or "").strip().split("\n")[0]
            if ref is not None:
                desc += f" Validated by `{sub.__name__}` when the run starts."
            keys.append(ConfigKey(table, name, f"table {label}",
                                  "unset" if info.default is None else "(table)", desc))
            sub_keys, sub_tables = collect_keys(sub, path, untyped=untyped)
            keys.extend(sub_keys)
            tables.update(sub_tables)
            tables[path] = (sub, label)
            continue
        desc = info.description or ""
        if _is_dict(info.annotation) and table == "":
            desc = f"{desc} A free-form table: see its stage's documentation.".strip()
        keys.append(ConfigKey(table, name, render_type(info.annotation), _render_default(info), desc))
    return keys, tables


def render_config_docs(model: type[BaseModel] | None = None) -> str:
    """The Markdown page: one section per TOML table, one row per key."""
    if model is None:
        from gecko_distill.config import PipelineConfig

        model = PipelineConfig
    keys, tables = collect_keys(model)
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated by `gecko-distill config-docs` from the pydantic models in gecko_distill; do not edit. -->",
        "",
        f"Every key `gecko-distill run CONFIG.toml` accepts ({model.__name__}). Unknown keys are rejected with the "
        "key named, the closest valid key and the full list. Regenerate this page with "
        "`gecko-distill config-docs` after changing a config model; `tests/unit/test_config_docs.py` checks "
        "that it is current.",
        "",
    ]
    for table, (sub, label) in tables.items():
        rows = [k for k in keys if k.table == table]
        if not rows:
            continue
        title = f"`{label}`" if label else "Top level"
        out += [f"## {title}", ""]
        doc = (sub.__doc__ or "").strip()
        if doc:
            out += [" ".join(doc.split("\n\n")[0].split()), ""]
        out += ["| key | type | default | description |", "|---|---|---|---|"]
        out += [f"| `{k.name}` | `{markdown_cell(k.type)}` | `{markdown_cell(k.default)}` | "
                f"{markdown_cell(k.description)} |" for k in rows]
        out.append("")
    return "\n".join(out)


def write_config_docs(path: str | Path = CONFIG_DOC_PATH) -> Path:
    """Write :func:`render_config_docs` to ``path`` (creating its folder) and return the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_config_docs(), encoding="utf-8")
    return p
