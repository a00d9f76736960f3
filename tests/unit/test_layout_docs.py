"""The README's layout section and docs/architecture.md name the tree as it is.

Run with ``python -m pytest -q tests/unit/test_layout_docs.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import gecko_distill

ROOT = Path(gecko_distill.__file__).parent.parent
PACKAGE = Path(gecko_distill.__file__).parent


def _layout_block() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Layout\n", 1)[1]
    return section.split("```", 2)[1]


def test_readme_layout_names_every_subpackage_and_nothing_else() -> None:
    block = _layout_block()
    named = set(re.findall(r"^\s{2}([a-z_]+)/", block, flags=re.M)) | set(re.findall(r"\b([a-z_]+)/\s", block))
    actual = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert named - {"gecko_distill"} == actual
    for module in re.findall(r"\b([a-z_]+\.py)\b", block):
        assert list(PACKAGE.rglob(module)), f"README layout names {module}, which is not in the package"


def test_architecture_doc_names_existing_modules() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for path in set(re.findall(r"`([a-z_]+/[a-z_]+\.(?:py|toml))", doc)):
        assert (PACKAGE / path).exists(), path
