"""The dependency graph of etlib points one way: every import, inside functions included, goes to the same
layer or below (the layers are the folder tree, see README "Repository layout"), and no modules import each other
in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "etlib"

#: Bottom to top. A module belongs to the first entry its dotted name falls under (a package or a module).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("etlib.base",),  # constants, landmark index sets, atomic writes: imports nothing from etlib
    ("etlib.config", "etlib.weights", "etlib.backends", "etlib.io", "etlib.metrics", "etlib.losses"),
    ("etlib.audio", "etlib.emoface"),  # perception models (features, judges) and the emotional face generator
    ("etlib.preprocess",),  # a video -> a subject folder
    ("etlib.gaussians", "etlib.encoders"),  # the rasterizer and the hash grids
    ("etlib.talking",),  # the model: branches, attention, composition
    ("etlib.train",),  # the six stages and a run's own metrics
    ("etlib.viz",),  # figures only
    ("etlib.evaluation", "etlib.render"),  # the paper's tables and checks; videos
    ("etlib.widgets", "etlib.course", "etlib.cli"),  # live controls, the papermill runner, console scripts
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] in ("__init__", "__main__"):
        parts = parts[:-1] if parts[-1] == "__init__" else parts
    return ".".join(parts)


def imports_of(path: Path, name: str) -> set[str]:
    """Every etlib module that ``path`` imports, at any depth of its syntax tree (function bodies included)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("etlib")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("etlib"):
                found |= {f"{target}.{a.name}" for a in node.names} | {target}
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        edges[name] = {t for t in imports_of(path, name) if t in modules and t != name}
    return edges


def layer_of(module: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in {__file__}")


def test_every_module_has_a_layer():
    for module in graph():
        if module != "etlib":
            layer_of(module)


def test_no_import_points_up():
    upward = [
        f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
        for a, targets in graph().items()
        if a != "etlib"
        for b in targets
        if b != "etlib" and layer_of(b) > layer_of(a)
    ]
    assert not upward, "imports that point up the layers:\n" + "\n".join(sorted(upward))


def find_cycle(edges: dict[str, set[str]], packages: set[str]) -> list[str] | None:
    """A cycle among modules (edges into package ``__init__`` namespaces left out), or None."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node], _ = 1, stack.append(node)
        for nxt in sorted(edges[node] - packages):
            if colour.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in colour and (cycle := visit(nxt)):
                return cycle
        colour[node], _ = 2, stack.pop()
        return None

    for start in sorted(edges):
        if start not in colour and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycles():
    edges = graph()
    packages = {module_name(p) for p in ROOT.rglob("__init__.py")}
    cycle = find_cycle(edges, packages)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checks_can_fail(tmp_path):
    """The checks catch what they are for: an import hidden in a function, a circle, a module without a layer."""
    hidden = tmp_path / "base.py"
    hidden.write_text("import numpy\n\n\ndef f():\n    from etlib.course import run_course\n")
    found = imports_of(hidden, "etlib.base")
    assert "etlib.course" in found and layer_of("etlib.course") > layer_of("etlib.base")
    edges = {"etlib.a": {"etlib.b"}, "etlib.b": {"etlib.c"}, "etlib.c": {"etlib.a"}, "etlib.d": set()}
    assert find_cycle(edges, set()) == ["etlib.a", "etlib.b", "etlib.c", "etlib.a"]
    assert find_cycle({"etlib.a": {"etlib.b"}, "etlib.b": set()}, set()) is None
    with pytest.raises(AssertionError, match="no layer"):
        layer_of("etlib.nowhere")
