"""The evaluation stage's config.

Defaults live here once; each field's description doubles as CLI help. The paper's evaluation instructions
(Gecko Table 9) are in :mod:`gecko_distill.embedding.task_strings`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["EvaluationConfig"]


class EvaluationConfig(BaseModel):
    """How ``gecko-distill evaluate`` runs: models, Matryoshka dims, input formats and speed limits."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    data: list[str] = Field(
        default_factory=list,
        description="Evaluation sets (folders; kind auto-detected; 'PATH:SPLIT' picks a split), used by "
        "`gecko-distill run` and `evaluate --config`; the CLI's --data adds to them.",
    )
    base: str | None = Field(
        "all-MiniLM-L6-v2",
        description="Base model evaluated beside the trained one (alias, path or hub name); None to skip.",
    )
    dims: list[int] | None = Field(
        None,
        description="Matryoshka dims to evaluate; default: the dims the model "
        "records in gecko_distill.json, else its full dim and halvings down to 64.",
    )
    prompts: Literal["auto", "unified", "plain", "none"] = Field(
        "auto",
        description="The evaluated model's input format: 'auto' (default) = the format it was trained with "
        "(a gecko-distill model's recorded format; raw text for any other model, as MTEB feeds it); "
        "'unified' (Gecko's 'task: … | query: …' / 'title: … | text: …'), 'plain' (task and text "
        "concatenated, the paper's format ablation), 'none' (raw text).",
    )
    base_prompts: Literal["auto", "same", "unified", "plain", "none"] = Field(
        "auto",
        description="The base model's input format: 'auto' (default) = its own format, so each model is "
        "compared in the format it was trained with (MTEB's protocol); 'same' = whatever the evaluated model "
        "gets (a same-format ablation), or a fixed format.",
    )
    task_strings: dict[str, str] = Field(
        default_factory=dict,
        description="Per-set task string overrides, e.g. {'scifact': 'fact checking'} (keys: set names).",
    )
    limit: int | None = Field(
        None,
        ge=1,
        description="Evaluate at most this many queries / pairs / test "
        "examples per set (seeded sample; results then not MTEB-comparable).",
    )
    max_corpus: int | None = Field(
        None, ge=1, description="Shrink retrieval corpora to this many documents (all judged ones kept)."
    )
    seed: int = Field(42, description="Seed of subsets and of MTEB's classification/clustering protocols.")
    batch_size: int = Field(32, ge=1, description="Encoding batch size (texts per batch, at most).")
    batch_tokens: Annotated[int, Field(ge=1)] | Literal["auto"] | None = Field(
        "auto", description="Cap each encoding batch at this many padded tokens ('auto': 2048 on a CPU, plain "
        "batches on a GPU; null: plain batches). Same embeddings, less time on a CPU.")
    max_seq_length: int | None = Field(None, ge=8, description="Override the models' max sequence length.")
    cache_dir: str | None = Field(
        None,
        description="On-disk embedding cache (content-addressed by model "
        "weights and text); None disables it.",
    )
    k_values: list[int] = Field([1, 3, 5, 10, 20, 100, 1000], description="Retrieval cut-offs (MTEB's).")
    language: str = Field(
        "und-Zyyy",
        description="Language tag written into mteb results "
        "(ISO 639-3 + script, e.g. 'eng-Latn'); default 'undetermined'.",
    )
    show_progress: bool = Field(True, description="Progress bars while encoding.")

    @field_validator("dims")
    @classmethod
    def _dims(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return v
        if not v or any(d < 1 for d in v):
            raise ValueError(f"dims must be positive integers, got {v}")
        return sorted(set(v), reverse=True)

    @field_validator("task_strings")
    @classmethod
    def _lower_keys(cls, v: dict[str, str]) -> dict[str, str]:
        return {k.lower(): s for k, s in v.items()}
