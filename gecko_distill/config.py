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
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from gecko_distill.errors import ConfigError
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

__all__ = [
    "DEFAULT_TASK_TYPES",
    "CorpusConfig",
    "EmbedderConfig",
    "GenerationConfig",
    "LLMConfig",
    "MiningConfig",
    "PipelineConfig",
    "RayConfig",
    "load_config",
    "validate_config",
]


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
    # Training/evaluation configs live with their stages; kept as raw tables here and validated there.
    training: dict[str, Any] | None = Field(None, description="[training] table (see `gecko-distill train`).")
    evaluation: dict[str, Any] | None = Field(None, description="[evaluation] table.")


def _format_validation_error(err: ValidationError, model: type[BaseModel], source: str) -> str:
    lines = [f"invalid config in {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            # Suggest the closest valid key, generated from the model's fields at that level.
            sub: Any = model
            for part in e["loc"][:-1]:
                fld = getattr(sub, "model_fields", {}).get(part)
                sub = fld.annotation if fld is not None else None
            valid = sorted(getattr(sub, "model_fields", {}).keys())
            close = difflib.get_close_matches(str(e["loc"][-1]), valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            msg = f"unknown key{hint}; valid keys: {', '.join(valid)}"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def load_config(path: str | Path, model: type[BaseModel] = PipelineConfig) -> Any:
    """Load a TOML file into ``model``, rejecting unknown keys with the key named."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {p}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from e
    return validate_config(data, model, source=str(p))


def validate_config(data: dict[str, Any], model: type[BaseModel], *, source: str = "config") -> Any:
    """Validate a mapping against ``model`` and raise :class:`ConfigError` with a readable message."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, model, source)) from None
