"""The layers import downwards only: models ← services/selectors ← api/tasks.

Read from the source with ``ast`` (nothing is imported), counting imports inside functions too:
an import moved into a function to dodge a cycle is still the cycle."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("staging", "tasks")
# Modules of staging/ that serve the API or wire it in at start-up (apps) and may import it.
MAY_IMPORT_API = (
    "staging.api",
    "staging.admin",
    "staging.admin_site",
    "staging.apps",
    "staging.management",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
    }


def _imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ours ``name`` imports: a ``from a.b import c`` names ``a.b.c`` when that is
    a module, else ``a.b``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names]
            targets = [t if t in known else base for t in targets]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imported(name, path, known) for name, path in modules.items()}


def _within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(start: str) -> None:
        # Iterative, so a deep import chain does not hit the recursion limit.
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return components


@pytest.fixture(scope="module")
def graph():
    return _graph()


def test_the_domain_does_not_import_the_api(graph):
    upward = sorted(
        f"{name} imports {target}"
        for name, targets in graph.items()
        if name.startswith("staging.") and not _within(name, MAY_IMPORT_API)
        for target in targets
        if _within(target, ("staging.api",))
    )
    assert upward == []


def test_the_domain_does_not_import_the_celery_tasks(graph):
    upward = sorted(
        f"{name} imports {target}"
        for name, targets in graph.items()
        if _within(name, ("staging",))
        for target in targets
        if _within(target, ("tasks",))
    )
    assert upward == []


def test_no_modules_import_each_other_in_a_circle(graph):
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_the_graph_sees_imports_inside_functions(graph, tmp_path):
    # The checks above are only as good as the graph: an import they missed would pass them.
    assert "staging.models" in graph["staging.services.jobs"]
    module = tmp_path / "late.py"
    module.write_text("def run():\n    from staging.services.jobs import job_create\n")
    known = {"staging.services.jobs", "staging.late"}
    assert _imported("staging.late", module, known) == {"staging.services.jobs"}
