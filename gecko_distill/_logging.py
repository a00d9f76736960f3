"""Logging set-up for entry points only (the CLI); library modules just call getLogger(__name__)."""

from __future__ import annotations

import logging
import os

__all__ = ["setup_logging"]


def setup_logging(level: str | None = None) -> None:
    from rich.logging import RichHandler

    lvl = (level or os.environ.get("GECKO_DISTILL_LOG", "INFO")).upper()
    logging.basicConfig(level=lvl, format="%(message)s", datefmt="[%X]",
                        handlers=[RichHandler(rich_tracebacks=False, show_path=False)])
    # Third-party chatter that drowns our progress output.
    for noisy in ("httpx", "sentence_transformers", "transformers", "urllib3", "faiss", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
