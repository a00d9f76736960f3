"""Prompt templates as package data (``default.toml``): a shared prefix (instructions + few-shot examples) and a
per-item part, for generation, query likelihood and relevance classification.

Modules: :mod:`.template` (``PromptSet``, ``load_prompts``, ``prompts_for``), :mod:`.chat` (the same prompts
rendered with an instruction-tuned LLM's chat template).
"""

from __future__ import annotations

from gecko_distill.prompts.chat import ChatTemplate
from gecko_distill.prompts.template import PromptSet, load_prompts, prompts_for

__all__ = ["ChatTemplate", "PromptSet", "load_prompts", "prompts_for"]
