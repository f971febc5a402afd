"""The packages import each other in one direction: model at the bottom (no threads, devices or
screens), streamer on top of it, calibrate and benchmarks on top of both, main.py on top of all
and imported by nothing. Every import statement counts, at module level or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "streamer", "calibrate", "benchmarks", "main")
FORBIDDEN = {  # package -> packages it must not import
    "model": {"streamer", "calibrate", "benchmarks", "main"},
    "streamer": {"calibrate", "benchmarks", "main"},
    "calibrate": {"benchmarks", "main"},
    "benchmarks": {"main"},
    "tests": {"main"},  # tests drive main.py as a user does: a subprocess
}
SKIP = {".venv", ".git", "runs", "cache", "build"}


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`, at any depth."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the file's own package
                out.append((node.lineno, ".".join(filter(None, [package, node.module]))))
            elif node.module:
                out.append((node.lineno, node.module))
    return out


def layer(module: str) -> str | None:
    top = module.split(".")[0]
    return top if top in PACKAGES else None


def project_files() -> list[tuple[str, Path]]:
    """(package the file belongs to, path) of every .py file of the project."""
    files = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if SKIP & set(rel.parts):
            continue
        files.append((rel.parts[0] if len(rel.parts) > 1 else rel.stem, path))
    return files


def edges() -> list[tuple[str, str, str]]:
    """(importing package, imported package, "file:line") across package borders."""
    out = []
    for package, path in project_files():
        for line, module in imported_modules(path.read_text(), package):
            target = layer(module)
            if target is not None and target != package:
                out.append((package, target, f"{path.relative_to(ROOT)}:{line}"))
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle's nodes, found by depth-first search from each node."""
    found = []

    def walk(path: list[str]) -> None:
        for nxt in sorted(graph.get(path[-1], ())):
            if nxt == path[0]:
                found.append(path)
            elif nxt not in path and nxt > path[0]:  # each cycle once, from its least node
                walk([*path, nxt])

    for start in sorted(graph):
        walk([start])
    return found


def test_the_scanner_sees_function_level_and_relative_imports():
    source = ("import os\nfrom streamer import app\n\ndef f():\n    import calibrate.sync\n"
              "    from .sibling import x\n")
    assert imported_modules(source, "model") == [(1, "os"), (2, "streamer"),
                                                  (5, "calibrate.sync"), (6, "model.sibling")]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_follow_the_layers():
    found = edges()
    assert {(a, b) for a, b, _ in found} >= {("streamer", "model"), ("calibrate", "streamer")}
    bad = [f"{where}: {a} imports {b}" for a, b, where in found if b in FORBIDDEN.get(a, ())]
    assert bad == []


def test_no_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for a, b, _ in edges():
        if a in PACKAGES:
            graph.setdefault(a, set()).add(b)
    assert cycles(graph) == []
