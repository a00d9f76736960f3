"""Stage 1 (Gecko §3.2, step 1): seed passages → LLM-written (task, query).

Modules: :mod:`.sampling` (seed passages, task types), :mod:`.parsing` (strict parsing, reject reasons),
:mod:`.stage` (``generate``: prompts → batched, resumable LLM calls → :class:`~gecko_distill.records.TaskQuery`).
"""

from __future__ import annotations

from gecko_distill.generation.stage import GenerationResult, generate, load_task_queries

__all__ = ["GenerationResult", "generate", "load_task_queries"]
