"""Imports point one way (ARCHITECTURE.md): no import circles, and no layer imports a higher one.

The import graph is read from the source with :mod:`ast`: every ``import`` and ``from ...
import`` of a ``befa_viz`` module counts, at module level and inside functions (a lazy import is
still a dependency), except those under ``if TYPE_CHECKING:`` (annotations only; never run).
``from befa_viz.pipeline import maps`` is an edge to the submodule ``befa_viz.pipeline.maps``;
``from befa_viz.pipeline import explain_item`` one to the package ``befa_viz.pipeline``.
"""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "befa_viz"

#: Lowest first. A module may import its own layer and the layers below, never a higher one;
#: within a layer the circle check keeps the order. A unit is a top-level module or subpackage
#: of befa_viz ("befa_viz" itself is the package's __init__, which re-exports the errors).
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("foundations", frozenset({"befa_viz", "_typing", "errors", "registry", "config", "weights",
                               "tracking", "cache"})),
    ("data and metrics", frozenset({"data", "metrics"})),  # metrics needs only numpy/torch
    ("features and models", frozenset({"workspace", "encoders", "models"})),
    ("training", frozenset({"train", "distributed"})),
    ("attribution", frozenset({"attribution"})),
    ("figures and evidence", frozenset({"viz", "evidence"})),  # viz gets data, reads no files
    ("verbs", frozenset({"pipeline"})),
    ("verbs built on verbs", frozenset({"benchmark"})),
    ("frontends", frozenset({"explore", "demo", "cli", "testing"})),
)

#: Known edges that break the rules, each with the fix it waits for (none today: the Ray jobs
#: that run verbs live beside their verbs, and the DDP context the training loop reads is apart
#: from the launcher that calls it); remove an entry when its edge is gone (a test checks that).
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import node, skipping the bodies of ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in _imports_of(child))
            continue
        yield from _imports_of(node)


def _imports_of(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    else:
        yield from _imports(node)


def import_graph() -> dict[str, set[str]]:
    """``{module: {befa_viz modules it imports}}`` over every module of the package."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:  # relative: resolve against this module's package
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[:len(base) - node.level + 1]
                    parent = ".".join(base + ([node.module] if node.module else []))
                else:
                    parent = node.module or ""
                targets = [f"{parent}.{a.name}" if f"{parent}.{a.name}" in mods else parent
                           for a in node.names]
            for t in targets:
                while t and t not in mods:  # `import befa_viz.x.y` of a name: its module
                    t = t.rpartition(".")[0]
                if t.startswith("befa_viz") and t != mod:
                    graph[mod].add(t)
    return graph


def _unit(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _layer(mod: str) -> int:
    unit = _unit(mod)
    for i, (_, units) in enumerate(LAYERS):
        if unit in units:
            return i
    raise AssertionError(f"{mod}: befa_viz.{unit} is in no layer of LAYERS in "
                         f"{Path(__file__).name}; add it where its imports put it.")


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    g = import_graph()
    for src, dst in KNOWN_EXCEPTIONS:
        g.get(src, set()).discard(dst)
    return g


def test_the_graph_sees_module_level_lazy_and_relative_imports(graph):
    assert "befa_viz.pipeline.maps" in graph["befa_viz.pipeline.explain"]  # module level
    assert "befa_viz.pipeline" in graph["befa_viz.explore"]
    assert "befa_viz.train" in graph["befa_viz.pipeline.train"]  # lazy, inside functions
    assert "befa_viz.attribution.ig" in graph["befa_viz.attribution.ig_family"]  # lazy
    # under TYPE_CHECKING only: not an edge
    assert "befa_viz.attribution.result" not in graph["befa_viz.viz.verdict"]


def test_befa_viz_has_no_import_circles(graph):
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as e:
        cycle = list(reversed(e.args[1]))  # graphlib lists it against the import direction
        pytest.fail("import circle: " + " -> ".join(cycle) + "; move the shared code down a "
                    "layer or pass it in as an argument (see ARCHITECTURE.md).")


def test_no_module_imports_a_higher_layer(graph):
    up = sorted(f"{src} ({LAYERS[_layer(src)][0]}) imports {dst} ({LAYERS[_layer(dst)][0]})"
                for src, dsts in graph.items() for dst in dsts if _layer(dst) > _layer(src))
    assert not up, "imports against the layers (ARCHITECTURE.md):\n" + "\n".join(up)


def test_viz_and_metrics_get_data_and_import_only_the_foundations(graph):
    # viz draws what it is given (an Attribution, arrays, tables) and reads no workspace file;
    # metrics need only numpy/torch. The Attribution type is imported for annotations only.
    allowed = LAYERS[0][1]
    bad = sorted(f"{src} imports {dst}" for src, dsts in graph.items()
                 if _unit(src) in ("viz", "metrics")
                 for dst in dsts if _unit(dst) not in allowed | {_unit(src)})
    assert not bad, "viz and metrics take data, not engines or files:\n" + "\n".join(bad)


def test_the_known_exceptions_still_exist():
    g = import_graph()
    gone = [f"{src} -> {dst}" for src, dst in KNOWN_EXCEPTIONS if dst not in g.get(src, set())]
    assert not gone, f"fixed, remove from KNOWN_EXCEPTIONS: {', '.join(gone)}"


def test_a_new_circle_fails_and_is_named():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    with pytest.raises(graphlib.CycleError) as e:
        tuple(graphlib.TopologicalSorter(g).static_order())
    cycle = e.value.args[1]
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}


def test_importing_the_cli_and_the_verbs_loads_neither_torch_nor_mlflow():
    code = ("import sys, befa_viz.cli, befa_viz.pipeline\n"
            "heavy = sorted(m for m in ('torch', 'mlflow') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
