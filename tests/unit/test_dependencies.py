"""The layering of the code base, read statically from the source.

The kernel (mesh.config, mesh.contract, mesh.embeddings, mesh.telemetry, mesh.v1) sits below the
router, the guards and the nodes; nodes run without the router and guards without the router. Two
graphs: the load-time one (module-level imports; those in `if TYPE_CHECKING:` blocks and inside
functions left out), where a cycle makes import order matter, and the full one, deferred imports
included, where a cycle or a breach of the layering is the same design fault merely postponed
(mesh.config once reached nodes.bridges.config through a function-level import). The subprocess
test checks the promise at run time for the node server.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mesh", "guards", "nodes")
KERNEL = ("mesh.config", "mesh.contract", "mesh.embeddings", "mesh.telemetry", "mesh.v1")


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
    }


MODULES = _modules()


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _load_time_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports that run when the module loads: not in functions, not under TYPE_CHECKING."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _load_time_imports(node.body)
            yield from _load_time_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _load_time_imports(block)
            for handler in node.handlers:
                yield from _load_time_imports(handler.body)
        elif isinstance(node, ast.With):
            yield from _load_time_imports(node.body)
        # Functions and classes: their bodies' imports run later (or are class-level, which
        # the code base does not use), so they are not load-time edges.


def _resolve(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The project modules an import statement loads (the deepest one each name refers to)."""
    if isinstance(node, ast.Import):
        targets = {alias.name for alias in node.names}
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".")
            is_package = MODULES[module].name == "__init__.py"
            anchor = package if is_package else package[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        # `from pkg import sub` loads pkg.sub when sub is a module, else just pkg.
        targets = {
            f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
            for alias in node.names
        }
    resolved = set()
    for target in targets:
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target and target.split(".")[0] in PACKAGES:
            resolved.add(target)
    return resolved


def _every_import(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node


def import_graph(*, deferred: bool = False) -> dict[str, set[str]]:
    """Project module -> project modules it imports (deferred: in functions and TYPE_CHECKING)."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        imports = _every_import(tree) if deferred else _load_time_imports(tree.body)
        edges: set[str] = set()
        for node in imports:
            edges |= _resolve(module, node)
        edges.discard(module)
        graph[module] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def forbidden(importer: str, imported: str) -> str | None:
    """Why `importer` may not import `imported`, or None when the layering allows it."""
    in_kernel = any(_within(imported, k) for k in KERNEL) or imported == "mesh"
    if any(_within(importer, k) for k in KERNEL) and not in_kernel:
        return "the kernel imports only the kernel"
    if _within(importer, "guards") and _within(imported, "mesh.router"):
        return "guards never import the router"
    if _within(importer, "nodes") and _within(imported, "mesh") and not in_kernel:
        return "nodes import only mesh.v1, mesh.contract, mesh.telemetry, mesh.config"
    return None


def breaches(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{importer} -> {imported}: {why}"
        for importer, imported_set in sorted(graph.items())
        for imported in sorted(imported_set)
        if (why := forbidden(importer, imported))
    ]


def test_the_graph_sees_the_code_base() -> None:
    graph = import_graph()
    # Guards against a walker that silently finds nothing (and so can never fail).
    assert "mesh.config" in graph and "nodes.server" in graph and "guards.chain" in graph
    assert "mesh.v1.types_pb2" in graph["nodes.server"]
    assert graph.keys() == import_graph(deferred=True).keys()


@pytest.mark.parametrize("deferred", [False, True], ids=["load-time", "deferred-too"])
def test_no_import_cycles(deferred: bool) -> None:
    cycles = find_cycles(import_graph(deferred=deferred))
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("deferred", [False, True], ids=["load-time", "deferred-too"])
def test_imports_follow_the_layering(deferred: bool) -> None:
    found = breaches(import_graph(deferred=deferred))
    assert not found, "layering breaches:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("importer", "imported", "breach"),
    [
        ("mesh.config.loader", "mesh.router.settings", True),
        ("mesh.contract.serving", "nodes.server", True),
        ("mesh.telemetry.setup", "guards.chain", True),
        ("mesh.config.router", "mesh.contract.node_token", False),
        ("guards.chain", "mesh.router.cache", True),
        ("guards.chain", "mesh.telemetry", False),
        ("nodes.server", "mesh.router.catalog", True),
        ("nodes.server", "mesh.embedded", True),
        ("nodes.server", "mesh.config", False),
        ("nodes.bridges.runtime", "mesh.v1.types_pb2", False),
        ("mesh.router.app", "guards.chain", False),
    ],
)
def test_the_layering_rule(importer: str, imported: str, breach: bool) -> None:
    assert (forbidden(importer, imported) is not None) is breach


def test_cycle_finder_reports_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_node_server_does_not_load_the_router() -> None:
    code = (
        "import sys\n"
        "import nodes.server\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[:2] == ['mesh', 'router'])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=ROOT,
    )
    assert out.stdout.strip() == "", f"import nodes.server loaded: {out.stdout.strip()}"
