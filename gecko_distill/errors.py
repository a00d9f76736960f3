"""The one exception tree of gecko-distill.

::

    GeckoDistillError
    ├── ConfigError            a config key or value is wrong (names the key and the allowed values)
    ├── InputError             input data is unusable (names the file and row)
    ├── BackendError           an LLM / embedder backend failed (carries the request summary)
    │   ├── BackendUnavailable a backend cannot be loaded (missing extra, missing model file)
    │   └── LoglikUnsupported  the backend/server cannot return token log-probs
    ├── ParseError             LLM output could not be parsed (used for reject reasons)
    └── StageIncompleteError   a stage directory exists but has no manifest (resume it)
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "ConfigError",
    "GeckoDistillError",
    "InputError",
    "LoglikUnsupported",
    "ParseError",
    "StageIncompleteError",
]


class GeckoDistillError(Exception):
    """Base class of every error raised on purpose by gecko-distill."""


class ConfigError(GeckoDistillError, ValueError):
    """A configuration key or value is invalid."""


class InputError(GeckoDistillError, ValueError):
    """Input data (corpus, dataset, evaluation files) cannot be used."""


class BackendError(GeckoDistillError, RuntimeError):
    """An LLM or embedding backend failed."""


class BackendUnavailable(BackendError):
    """A backend cannot be constructed: an optional dependency or a model file is missing."""


class LoglikUnsupported(BackendError):
    """The backend (or the server behind it) cannot return token log-probabilities."""


class ParseError(GeckoDistillError, ValueError):
    """LLM output could not be parsed; ``reason`` is the reject-reason key."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


class StageIncompleteError(GeckoDistillError, RuntimeError):
    """A stage directory has no manifest: it was interrupted and must be resumed first."""
