"""Where gecko-distill keeps things outside run directories (assembled model files)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_home"]


def cache_home() -> Path:
    """``$GECKO_DISTILL_CACHE`` or ``$XDG_CACHE_HOME/gecko-distill`` (default ``~/.cache/gecko-distill``)."""
    env = os.environ.get("GECKO_DISTILL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gecko-distill"
