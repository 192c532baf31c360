"""The host's import graph: no module or package of ``sectorhooks`` imports one that imports it
back, the state writer and sync meet only through what the runtime hands them, and the SPI
distribution (``sectorhooks_spec``) never imports the host.

The graph is read from the source with ``ast`` (nothing is imported): every ``import`` and
``from ... import`` at any depth, inside functions too, relative ones resolved. Imports under
``if TYPE_CHECKING:`` are left out: they never run, so they cannot make an import cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
HOST = ROOT / "src" / "sectorhooks"
SPEC = ROOT / "hookspecs" / "sectorhooks_spec"

Graph = Dict[str, Dict[str, int]]  # module -> {module it imports: line of the first such import}


def modules(package_dir: Path) -> Dict[str, Tuple[Path, bool]]:
    """Dotted name -> (file, is a package) for every module of the package in ``package_dir``."""
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(tree):
        yield child
        if _type_checking(child):
            for other in child.orelse:  # type: ignore[attr-defined]
                yield other
                yield from _nodes(other)
        else:
            yield from _nodes(child)


def imports(name: str, path: Path, is_package: bool) -> Iterator[Tuple[str, int]]:
    """``(absolute dotted name, line)`` of each name module ``name`` imports, at any depth:
    ``from a import b`` gives ``a.b`` (a module, or a name of ``a``)."""
    package = name if is_package else name.rpartition(".")[0]
    for node in _nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                yield f"{source}.{alias.name}", node.lineno


def graph(mods: Dict[str, Tuple[Path, bool]]) -> Graph:
    """Edges between the modules of ``mods``: each import resolved to the longest module name
    it starts with (``a.b.c`` -> module ``a.b`` when ``c`` is a name defined in it)."""
    edges: Graph = {}
    for name, (path, is_package) in mods.items():
        out = edges.setdefault(name, {})
        for target, line in imports(name, path, is_package):
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.setdefault(target, line)
    return edges


def by_package(edges: Graph, depth: int = 2) -> Graph:
    """The graph between packages: ``sectorhooks.sync.service`` counts as ``sectorhooks.sync``
    (``depth`` dotted parts); imports within one package are dropped."""

    def top(name: str) -> str:
        return ".".join(name.split(".")[:depth])

    out: Graph = {}
    for name, targets in edges.items():
        mine = out.setdefault(top(name), {})
        for target, line in targets.items():
            if top(target) != top(name):
                mine.setdefault(top(target), line)
    return out


def find_cycle(edges: Graph) -> Optional[List[str]]:
    """A cycle as a path ``[a, b, ..., a]``, or ``None`` when the graph has none."""
    done: set = set()
    for start in sorted(edges):
        if start in done:
            continue
        path: List[str] = [start]
        on_path = {start}
        stack = [iter(sorted(edges.get(start, ())))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                on_path.discard(path[-1])
                done.add(path.pop())
            elif nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(sorted(edges.get(nxt, ()))))
    return None


def describe(cycle: List[str], edges: Graph) -> str:
    return (
        "import cycle: "
        + " -> ".join(cycle)
        + "".join(f"\n  {a} imports {b} (line {edges[a][b]})" for a, b in zip(cycle, cycle[1:]))
    )


def host_graph() -> Graph:
    return graph(modules(HOST))


def test_no_module_of_the_host_imports_one_that_imports_it_back() -> None:
    edges = host_graph()
    cycle = find_cycle(edges)
    assert cycle is None, describe(cycle, edges)


def test_no_package_of_the_host_imports_one_that_imports_it_back() -> None:
    edges = by_package(host_graph())
    cycle = find_cycle(edges)
    assert cycle is None, describe(cycle, edges)


def test_state_and_sync_meet_only_through_the_change_log_and_the_runtime() -> None:
    """Data flows one way: state writer -> change log -> dispatchers. The state manager knows
    nothing of sync, sync nothing of state's internals (the runtime hands it what it reads),
    and the change log neither."""
    edges = by_package(host_graph())
    assert "sectorhooks.sync" not in edges["sectorhooks.state"]
    assert "sectorhooks.state" not in edges["sectorhooks.sync"]
    assert {"sectorhooks.state", "sectorhooks.sync"}.isdisjoint(edges["sectorhooks.changelog"])
    assert "sectorhooks.changelog" in edges["sectorhooks.state"]
    assert "sectorhooks.changelog" in edges["sectorhooks.sync"]


def test_the_spi_never_imports_the_host() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for name, (path, is_package) in modules(SPEC).items()
        for target, line in imports(name, path, is_package)
        if target == "sectorhooks" or target.startswith("sectorhooks.")
    ]
    assert found == []


def test_sync_and_the_change_log_generate_no_code() -> None:
    """Hook arguments are built by plain functions: no ``exec`` or ``compile`` at run time."""
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for package in ("sync", "changelog")
        for path in sorted((HOST / package).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("exec", "eval", "compile")
    ]
    assert found == []


def test_the_graph_sees_imports_inside_functions_and_reports_a_cycle_as_a_path() -> None:
    edges = host_graph()
    assert "sectorhooks.state" in edges["sectorhooks.runtime"]  # imported inside Runtime.open
    assert "sectorhooks.changelog.format" in edges["sectorhooks.state.txn"]  # relative, two levels
    made_up = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "d": 4}, "d": {}}
    assert find_cycle(made_up) == ["a", "b", "c", "a"]
    assert "c imports a (line 3)" in describe(["a", "b", "c", "a"], made_up)
    assert find_cycle({"a": {"b": 1}, "b": {}, "c": {"b": 1}}) is None
