"""Markdown helpers shared by the generated docs (config_docs) and the model card (training)."""

from __future__ import annotations

__all__ = ["markdown_cell"]


def markdown_cell(text: str) -> str:
    """Text for a Markdown table cell: GitHub splits cells on ``|`` even inside code spans unless escaped."""
    return text.replace("|", "\\|").replace("\n", " ")
