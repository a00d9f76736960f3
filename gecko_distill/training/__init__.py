"""Stage 3: train an embedder on FRet with the Gecko loss (eq. 3), Matryoshka dims and unified formats.

>>> from gecko_distill.training import train, TrainingConfig
>>> result = train("runs/demo/fret", "runs/demo/model", config=TrainingConfig(epochs=2))  # doctest: +SKIP
>>> SentenceTransformer(str(result.model_dir)).encode_query("who made the atomic bomb?")  # doctest: +SKIP

Modules: :mod:`.losses` (GeckoLoss, CachedGeckoLoss), :mod:`.data` (records → formatted datasets),
:mod:`.sampling` (per-source weights), :mod:`.loop` (the trainer wrapper), :mod:`.finetune` (``train``),
:mod:`.prefinetuning` (the optional self-supervised stage), :mod:`.model_info` (``gecko_distill.json``).

Exports load lazily, so that importing :mod:`.config` (for the CLI's help texts) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gecko_distill.training.config import MixSource, PrefinetuneConfig, TrainingConfig, parse_mix_spec
    from gecko_distill.training.finetune import train
    from gecko_distill.training.loop import TrainResult
    from gecko_distill.training.distill import DistillLoss
    from gecko_distill.training.losses import CachedGeckoLoss, GeckoLoss
    from gecko_distill.training.model_info import ModelInfo, read_model_info
    from gecko_distill.training.prefinetuning import prefinetune

__all__ = [
    "CachedGeckoLoss",
    "DistillLoss",
    "GeckoLoss",
    "MixSource",
    "ModelInfo",
    "PrefinetuneConfig",
    "TrainResult",
    "TrainingConfig",
    "parse_mix_spec",
    "prefinetune",
    "read_model_info",
    "train",
]

_WHERE = {
    "CachedGeckoLoss": "losses",
    "DistillLoss": "distill",
    "GeckoLoss": "losses",
    "MixSource": "config",
    "ModelInfo": "model_info",
    "PrefinetuneConfig": "config",
    "TrainResult": "loop",
    "TrainingConfig": "config",
    "parse_mix_spec": "config",
    "prefinetune": "prefinetuning",
    "read_model_info": "model_info",
    "train": "finetune",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
