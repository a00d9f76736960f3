"""The package's import graph: no cycle, and every arrow points down the pipeline.

The graph is read from the source with :mod:`ast`, module-level and function-level imports alike (an import
moved into a function still runs, and hiding a cycle there is what this test exists to stop);
``if TYPE_CHECKING:`` imports count as well, since they state a dependency too. Run with
``python -m pytest -q tests/unit/test_import_graph.py``.

Layers, in pipeline order (a module may import its own layer, a lower one, or a shared module)::

    corpus → generation → retrieval → labelling → mining → training → evaluation → report → (entry points)

Shared modules (``llm/``, ``embedding/``, ``prompts/``, ``errors``, ``records``, ``artifacts``, ...) import
only shared modules, and ``llm/`` and ``embedding/`` do not import each other.
"""

from __future__ import annotations

import ast
import json
import random
import subprocess
import sys
from pathlib import Path

import gecko_distill

PACKAGE_DIR = Path(gecko_distill.__file__).parent

#: Pipeline layers, in order; a module's layer is its first dotted component below ``gecko_distill``.
LAYERS = ["corpus", "generation", "retrieval", "labelling", "mining", "training", "evaluation", "report"]

#: Entry points and orchestration: may import anything; nothing in the layers may import them.
TOP = {"config", "config_docs", "pipeline", "cli", "executors", "__main__"}

#: Shared modules: may import only each other (the package root holds ``__version__`` only).
SHARED = {"", "_batching", "_markdown", "_logging", "_paths", "_stage", "artifacts", "embedding", "errors", "llm",
          "prompts", "records", "stage_configs", "testing"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules that ``name`` imports anywhere in its body."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                mod = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import sub` imports the submodule pkg.sub when there is one.
            subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in known]
            out.update(subs if len(subs) == len(node.names) else [mod, *subs])
    return {m for m in out if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_module_is_classified() -> None:
    unknown = sorted({_layer(m) for m in _modules()} - set(LAYERS) - TOP - SHARED)
    assert not unknown, f"place these in LAYERS, TOP or SHARED: {unknown}"


def test_no_import_cycle() -> None:
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _allowed(src_layer: str, dst_layer: str) -> bool:
    if {src_layer, dst_layer} == {"llm", "embedding"}:
        return False  # two leaves: the LLM layer and the embedding layer know nothing of each other
    if src_layer in TOP:
        return True
    if dst_layer in TOP:
        return False
    if src_layer in SHARED:
        return dst_layer in SHARED
    if dst_layer in SHARED:
        return True
    return LAYERS.index(src_layer) >= LAYERS.index(dst_layer)


def test_arrows_point_down_the_pipeline() -> None:
    bad = [f"{src} -> {dst}" for src, targets in sorted(_graph().items()) for dst in sorted(targets)
           if not _allowed(_layer(src), _layer(dst))]
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_a_back_arrow_is_caught() -> None:
    assert not _allowed("labelling", "evaluation")
    assert not _allowed("llm", "embedding")
    assert not _allowed("errors", "corpus")
    assert _allowed("mining", "labelling")
    assert _allowed("cli", "training")


def test_the_graph_sees_known_imports() -> None:
    graph = _graph()
    assert "gecko_distill.labelling.fusion" in graph["gecko_distill.mining.stage"]
    assert "gecko_distill.errors" in graph["gecko_distill.config"]


def test_every_module_imports_in_any_order() -> None:
    names = [m for m in _modules() if not m.endswith("__main__")]
    for seed in (0,):
        order = list(names)
        random.Random(seed).shuffle(order)
        code = ("import importlib, json, sys\n"
                "for name in json.loads(sys.argv[1]):\n"
                "    importlib.import_module(name)\n")
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(order)], capture_output=True, text=True,
                              timeout=300, check=False)
        assert proc.returncode == 0, f"order seed {seed}:\n{proc.stderr[-3000:]}"


def test_package_inits_only_re_export() -> None:
    """Stage code lives in named modules; an ``__init__.py`` imports and lists names (lazily at most)."""
    allowed = (ast.Import, ast.ImportFrom, ast.Expr, ast.Assign, ast.AnnAssign, ast.If)
    bad = []
    for path in sorted(PACKAGE_DIR.rglob("__init__.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            lazy = isinstance(node, ast.FunctionDef) and node.name in ("__getattr__", "__dir__")
            if not (lazy or isinstance(node, allowed)):
                bad.append(f"{path.relative_to(PACKAGE_DIR)}:{node.lineno} {type(node).__name__}")
    assert not bad, "code in package __init__ files:\n" + "\n".join(bad)
