"""Prompt templates as package data (``default.toml``): a shared prefix (instructions + few-shot examples) and a
per-item part, for generation, query likelihood and relevance classification.

Modules: :mod:`.template` (``PromptSet``, ``load_prompts``).
"""

from __future__ import annotations

from gecko_distill.prompts.template import PromptSet, load_prompts

__all__ = ["PromptSet", "load_prompts"]
