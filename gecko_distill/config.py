"""The whole run's config (:class:`PipelineConfig`) and the one way a TOML table is loaded.

Every command reads its config through :func:`load_table`: the file (or one table of it), then the CLI's
options on top, then validation against the table's pydantic model, unknown keys rejected with the closest
valid key named. The stage configs themselves live with their stages: :mod:`gecko_distill.stage_configs`
(corpus, llm, embedder, generation, mining, ray), :mod:`gecko_distill.training.config` and
:mod:`gecko_distill.evaluation.config`; they are re-exported here.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from pydantic import BaseModel, Field, ValidationError, model_validator

from gecko_distill.errors import ConfigError
from gecko_distill.evaluation.config import EvaluationConfig
from gecko_distill.stage_configs import (
    DEFAULT_TASK_TYPES,
    CorpusConfig,
    EmbedderConfig,
    GenerationConfig,
    LLMConfig,
    MiningConfig,
    RayConfig,
    StrictModel,
)
from gecko_distill.training.config import PrefinetuneConfig, TrainingConfig

__all__ = [
    "DEFAULT_TASK_TYPES",
    "CorpusConfig",
    "EmbedderConfig",
    "EvaluationConfig",
    "GenerationConfig",
    "LLMConfig",
    "MiningConfig",
    "PipelineConfig",
    "RayConfig",
    "TrainingConfig",
    "load_config",
    "load_table",
    "validate_config",
]

M = TypeVar("M", bound=BaseModel)


class PipelineConfig(StrictModel):
    """A whole run: all stages, written to ``out_dir`` as sibling stage folders."""

    out_dir: str = Field("runs/default", description="Run directory (stage folders go inside).")
    executor: Literal["local", "ray"] = Field("local", description="Where LLM stages run.")
    ray: RayConfig = Field(default_factory=RayConfig, description="[ray] table, used when executor = 'ray'.")
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    mining: MiningConfig = Field(default_factory=MiningConfig)
    prefinetune: PrefinetuneConfig | None = Field(
        None, description="[prefinetune] table (see `gecko-distill prefinetune`): pre-finetune the base model "
        "on the run's own corpus ((title, body) pairs, no LLM) before [training] starts from it; the run's "
        "[corpus] is used. Unset: training starts from training.base_model.")
    training: TrainingConfig | None = Field(None, description="[training] table (see `gecko-distill train`); "
                                            "unset: the run ends with the FRet set.")
    evaluation: EvaluationConfig | None = Field(None, description="[evaluation] table (see `gecko-distill "
                                                "evaluate`): evaluate the trained model beside its base.")

    @model_validator(mode="after")
    def _stages_fit_together(self) -> PipelineConfig:
        # Cross-table checks, so that a bad combination fails when the file is loaded, not hours into a run.
        if self.prefinetune is not None:
            if self.training is None:
                raise ValueError("[prefinetune] prepares the model that [training] trains: add a [training] "
                                 "table")
            if "corpus" in self.prefinetune.model_fields_set:
                raise ValueError("[prefinetune.corpus]: a run pre-finetunes on its own [corpus]; remove the "
                                 "table (or run `gecko-distill prefinetune` on another corpus and set "
                                 "training.base_model to its output)")
            if ("base_model" in self.prefinetune.model_fields_set
                    and self.prefinetune.base_model != self.training.base_model):
                raise ValueError(f"prefinetune.base_model ({self.prefinetune.base_model!r}) differs from "
                                 f"training.base_model ({self.training.base_model!r}): a run pre-finetunes "
                                 "the model it trains; set training.base_model only")
            merging = self.training.merge_base > 0 or self.training.merge_with is not None
            if self.prefinetune.combine == "average" and merging:
                raise ValueError("prefinetune.combine = 'average' averages the trained model with the "
                                 "pre-finetuned one: unset training.merge_base and training.merge_with, or "
                                 "use combine = 'sequential'")
        if self.evaluation is not None:
            if self.training is None:
                raise ValueError("[evaluation] evaluates the trained model: add a [training] table")
            if not self.evaluation.data:
                raise ValueError('[evaluation] needs data = ["path/to/set", ...] (BEIR, STS, classification or '
                                 "pair-classification folders)")
        return self


def _table_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside a field's annotation (``TrainingConfig | None``, ``list[MixSource]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if (found := _table_model(arg)) is not None:
            return found
    return None


def _format_validation_error(err: ValidationError, model: type[BaseModel], source: str) -> str:
    lines = [f"invalid config in {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            # Suggest the closest valid key, generated from the model's fields at that level.
            sub: Any = model
            for part in e["loc"][:-1]:
                if isinstance(part, int):  # an item of a list of tables, e.g. training.mix.0
                    continue
                fld = getattr(sub, "model_fields", {}).get(part)
                sub = _table_model(fld.annotation) if fld is not None else None
            valid = sorted(getattr(sub, "model_fields", {}).keys())
            close = difflib.get_close_matches(str(e["loc"][-1]), valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            msg = f"unknown key{hint}; valid keys: {', '.join(valid)}"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def _overlay(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` on top; ``None`` means "not given" and nested tables merge key by key."""
    out = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            inner = out.get(key)
            out[key] = _overlay(inner if isinstance(inner, dict) else {}, value)
        else:
            out[key] = value
    return out


def load_table(path: str | Path | None, model: type[M], *, table: str | None = None,
               overrides: Mapping[str, Any] | None = None) -> M:
    """The one way a command reads its config: a TOML file, the CLI's options on top, then validation.

    Args:
        path: The TOML file; ``None`` = options and defaults only.
        model: The pydantic model of the table (unknown keys are rejected with the closest valid key named).
        table: Read this table of the file (``"training"`` reads ``[training]``) when the file has it, else the
            whole file, so a file holding just that table's keys works too. ``None`` = the whole file.
        overrides: The options actually given (``None`` values are skipped); nested mappings merge into the
            file's tables key by key, so ``{"llm": {"model": "x"}}`` keeps the rest of ``[llm]``.

    Raises:
        ConfigError: the file is missing or not TOML, or the merged values do not validate; the message names
            the file (or "command line") and every bad key.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: not valid TOML: {e}") from None
        if table is not None and isinstance(data.get(table), dict):
            data = data[table]
    data = _overlay(data, overrides or {})
    return validate_config(data, model, source=str(path) if path is not None else "command line")


def load_config(path: str | Path, model: type[M] = PipelineConfig) -> M:  # type: ignore[assignment]
    """Load a whole TOML file into ``model`` (a :class:`PipelineConfig` by default); see :func:`load_table`."""
    return load_table(path, model)


def validate_config(data: Mapping[str, Any], model: type[M], *, source: str = "config") -> M:
    """Validate a mapping against ``model`` and raise :class:`ConfigError` with a readable message."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, model, source)) from None
