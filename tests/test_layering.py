"""The host library's imports go one way: cli -> pipeline, compare -> techniques -> stages -> the stage modules.

Read from the source (every import, including those inside functions, which are how heavy modules are deferred), so
a cycle that only shows at run time on some path still fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edgeopt"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            found.update(t for t in targets if t in modules and t != name and t != "edgeopt")
        graph[name] = found
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle() -> None:
    assert _cycle(_imports()) is None


def test_layers_import_downwards_only() -> None:
    graph = _imports()
    orchestrators = {"edgeopt.cli", "edgeopt.pipeline", "edgeopt.compare", "edgeopt.render"}
    assert not graph["edgeopt.stages"] & (orchestrators | {"edgeopt.techniques"})
    assert not graph["edgeopt.techniques"] & orchestrators
    # build and compare are siblings: neither imports the other.
    assert "edgeopt.compare" not in graph["edgeopt.pipeline"] and "edgeopt.pipeline" not in graph["edgeopt.compare"]
    assert [m for m, deps in graph.items() if "edgeopt.cli" in deps] == []
    for bottom in ("edgeopt.errors", "edgeopt.defaults", "edgeopt.events", "edgeopt.profiles", "edgeopt.cache_dirs"):
        assert graph[bottom] <= {"edgeopt.errors", "edgeopt.defaults"}, (bottom, graph[bottom])


def test_the_runtime_never_imports_the_host_side() -> None:
    for path in (ROOT / "runtime" / "edgeopt_runtime").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not [n for n in names if n == "edgeopt" or n.startswith("edgeopt.")], path
