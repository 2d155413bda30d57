"""Imports only go down (docs/ARCHITECTURE.md, "Layers").

Every ``.py`` under ``stylehub_ray`` is parsed with ``ast`` (no import runs, no Ray): each
``import x`` and ``from x import y``, inside functions too, relative ones resolved. A module
belongs to the layer of its package (``stylehub_ray/eval/recommend.py``: ``eval``) or, at the
top level, of its own name (``stylehub_ray/run.py``: ``run``). The test fails on an import
that goes up a layer and on a cycle between packages (``features -> embed -> features``),
listing every one.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "stylehub_ray"

# Package or top-level module of stylehub_ray -> layer (docs/ARCHITECTURE.md).
LAYERS = {
    # 0 base: run directory and manifest, configs, the stage table, logging, metrics, plots
    "__init__": 0, "run": 0, "config": 0, "registry": 0, "logs": 0, "compat": 0,
    "ray_utils": 0, "metrics": 0, "plots": 0, "tensor_io": 0,
    "data": 1,  # the real formats
    "synth": 2,  # generated data
    "features": 3, "embed": 3,  # features, inputs, history; encoders, vectors, FAISS
    "models": 4,  # torch models (no Ray), artifacts, the two-tower's chain
    "train": 5,
    "eval": 6,
    "tune": 7,
    "serve": 8,
    "pipeline": 9, "cli": 9, "__main__": 9, "report": 9,
}

# Violations other work is still removing: (importer module, imported module). Each must still
# occur (the test fails on a stale entry), so this set only shrinks.
ALLOWED: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(modules: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(importer, imported module, line) for every import of a stylehub_ray module."""
    out = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node)
                # `from pkg import sub` imports the submodule pkg.sub when there is one.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            else:
                continue
            for t in targets:
                if t == PACKAGE or t.startswith(PACKAGE + "."):
                    out.append((name, t, node.lineno))
    return out


def unit(module: str) -> str:
    """The package or top-level module that decides a module's layer."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one unit (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer():
    missing = sorted({unit(m) for m in _modules()} - set(LAYERS))
    assert not missing, (f"stylehub_ray packages / modules without a layer: {missing}; add "
                         f"them to LAYERS here and to docs/ARCHITECTURE.md")


def test_layer_table_matches_the_architecture_page():
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    wrong = []
    for layer, names in re.findall(r"^\|\s*(\d+)[^|]*\|([^|]*)\|", doc, re.M):
        for name in re.findall(r"`([^`]+)`", names):
            if LAYERS.get(name) != int(layer):
                wrong.append(f"{name}: page {layer}, test {LAYERS.get(name)}")
    assert not wrong, "docs/ARCHITECTURE.md and LAYERS disagree: " + "; ".join(wrong)


def test_imports_only_go_down():
    modules = _modules()
    found = imports(modules)
    up, seen = set(), set()
    for importer, imported, line in found:
        a, b = unit(importer), unit(imported)
        if LAYERS.get(b, -1) > LAYERS.get(a, -1):
            seen.add((importer, imported))
            if (importer, imported) not in ALLOWED:
                up.add(f"{importer}:{line} imports {imported} ({a} layer {LAYERS[a]} -> "
                          f"{b} layer {LAYERS[b]})")
    stale = sorted(ALLOWED - seen)
    assert not up, "imports that go up a layer:\n  " + "\n  ".join(sorted(up))
    assert not stale, ("ALLOWED entries that no longer occur (remove them):\n  "
                       + "\n  ".join(f"{a} -> {b}" for a, b in stale))


def test_no_cycles_between_packages():
    found = [(a, b) for a, b, _ in imports(_modules())
             if unit(a) != unit(b) and (a, b) not in ALLOWED]
    cycles = _cycles({(unit(a), unit(b)) for a, b in found})
    detail = []
    for comp in cycles:
        # Every cycle holds an edge that does not go down: name those, with their imports.
        against: dict[tuple[str, str], set[str]] = {}
        for a, b in found:
            ua, ub = unit(a), unit(b)
            if ua in comp and ub in comp and LAYERS.get(ub, -1) >= LAYERS.get(ua, -1):
                against.setdefault((ua, ub), set()).add(f"{a} -> {b}")
        detail.append(" <-> ".join(comp) + ":\n    " + "\n    ".join(
            f"{ua} -> {ub}: {', '.join(sorted(m))}" for (ua, ub), m in sorted(against.items())))
    assert not cycles, "import cycles between packages:\n  " + "\n  ".join(detail)


def test_models_hold_no_ray():
    """models/ is torch only (ARCHITECTURE.md, layer 4): training, batch inference and every
    serving part use it without Ray."""
    found = []
    for name, path in _modules().items():
        if unit(name) != "models":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                     else [])
            found += [f"{name}:{node.lineno} imports {n}" for n in names
                      if n == "ray" or n.startswith("ray.")]
    assert not found, "Ray imported in models/:\n  " + "\n  ".join(found)


def test_the_walk_sees_imports_inside_functions_and_relative_ones(tmp_path):
    """The walker itself: nested and relative imports are found and resolved."""
    pkg = tmp_path / PACKAGE / "eval"
    pkg.mkdir(parents=True)
    (tmp_path / PACKAGE / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from . import a\n")
    (pkg / "a.py").write_text("def f():\n    from ..serve import core\n"
                              "    import stylehub_ray.run\n    from .b import x\n")
    (pkg / "b.py").write_text("x = 1\n")
    (tmp_path / PACKAGE / "serve").mkdir()
    (tmp_path / PACKAGE / "serve" / "core.py").write_text("")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        got = {(a, b) for a, b, _ in imports(_modules())}
    finally:
        ROOT = saved
    assert got == {("stylehub_ray.eval", "stylehub_ray.eval.a"),
                   ("stylehub_ray.eval.a", "stylehub_ray.serve.core"),
                   ("stylehub_ray.eval.a", "stylehub_ray.run"),
                   ("stylehub_ray.eval.a", "stylehub_ray.eval.b")}
    assert _cycles({("features", "embed"), ("embed", "features"), ("embed", "data")}) == [
        ["embed", "features"]]
