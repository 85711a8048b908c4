"""The shape of the package: the tree reads as the flow, imports run one way along it, and modules stay readable.

The flow: core <- audio <- features <- models <- encoder <- scoring <- detector <- explain <- {evaluation, field}
<- cli. A sub-package imports only those before it (and core); synthesis imports only core; data (the Lightning data
modules, their augmentation and the pretraining corpus) imports only core, audio, synthesis, features and models,
and only cli imports it. Every import counts: inside functions and under `TYPE_CHECKING` too. The monitor's
history (history) imports only core; field writes it, console (`ssad serve`) reads it, and cli opens both.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ssad"
RESULTS = PACKAGE.parent / "experiments" / "results"
MAX_MODULE_LINES = 500
#: modules directly in ssad/ besides __init__.py
MAX_TOP_MODULES = 4

FLOW = ("core", "audio", "features", "models", "encoder", "scoring", "detector", "explain")
#: each sub-package -> the sub-packages it may import besides itself
ALLOWED: dict[str, set[str]] = {package: set(FLOW[:k]) for k, package in enumerate(FLOW)}
ALLOWED |= {
    "synthesis": {"core"},
    "data": {"core", "audio", "synthesis", "features", "models"},
    "evaluation": set(FLOW),
    "history": {"core"},
    "field": {*FLOW, "history"},
    "console": {*FLOW, "history"},
    "cli": {*FLOW, "synthesis", "data", "evaluation", "history", "field", "console"},
}
def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def _read_graph() -> tuple[tuple[str, frozenset[str]], ...]:
    return tuple((name, frozenset(targets)) for name, targets in _import_graph().items())


def import_graph() -> dict[str, set[str]]:
    """`_import_graph`, parsed once per test session (a fresh copy for each caller)."""
    return {name: set(targets) for name, targets in _read_graph()}


def _import_graph() -> dict[str, set[str]]:
    """Each ssad module's ssad imports, wherever in the file they stand (lazy ones and `TYPE_CHECKING` ones too).

    A string that names an ssad module counts too: package faces import their members by name (`importlib`).
    """
    paths = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                targets.add(base)
                targets.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("ssad."):
                targets.add(node.value)
        graph[name] = {t for t in targets if t in paths and t != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that reach each other through imports (strongly connected, more than one module)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        order[module] = low[module] = len(order)
        stack.append(module)
        for target in sorted(graph[module]):
            if target not in order:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], order[target])
        if low[module] == order[module]:
            group = stack[stack.index(module) :]
            del stack[stack.index(module) :]
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(graph):
        if module not in order:
            visit(module)
    return cycles


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def package_of(module: str) -> str | None:
    """The sub-package a module belongs to (`ssad.scoring.knn` -> `scoring`); None for ssad/ itself and its loose modules."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else None


def against_the_flow(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Every import from a sub-package into one it may not import."""
    wrong = []
    for module, targets in graph.items():
        source = package_of(module)
        for target in targets:
            goal = package_of(target)
            if source is None or goal is None or goal == source:
                continue
            if goal not in ALLOWED[source]:
                wrong.append((module, target))
    return sorted(wrong)


def test_the_check_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]


def test_the_check_finds_an_import_against_the_flow() -> None:
    graph = {"ssad.scoring.knn": {"ssad.detector.detector", "ssad.core.errors"}, "ssad.detector.detector": set()}
    assert against_the_flow(graph) == [("ssad.scoring.knn", "ssad.detector.detector")]


def test_no_two_modules_import_each_other() -> None:
    graph = import_graph()
    assert "ssad.encoder" in graph["ssad.detector.detector"]
    assert import_cycles(graph) == []


def test_every_sub_package_has_its_place_in_the_flow() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(ALLOWED)


def test_imports_follow_the_flow() -> None:
    assert against_the_flow(import_graph()) == []


def test_only_cli_imports_the_data_modules() -> None:
    graph = import_graph()
    importers = {package_of(m) for m, targets in graph.items() for t in targets if package_of(t) == "data"}
    assert importers - {"data"} <= {"cli"}


def test_no_re_export_shim_directly_in_ssad() -> None:
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        body = [node for node in tree.body if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
        if path.name != "__init__.py":
            assert not all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in body), path.name


def test_no_module_getattr_forwards_to_another_package() -> None:
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        tree = ast.parse(path.read_text())
        if not any(isinstance(node, ast.FunctionDef) and node.name == "__getattr__" for node in tree.body):
            continue
        named = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
                 and re.fullmatch(r"ssad(\.\w+)+", node.value)}
        assert {n for n in named if not (n + ".").startswith(name + ".")} == set(), name


def test_evaluation_does_not_depend_on_the_data_modules() -> None:
    assert not {m for m in reachable(import_graph(), "ssad.evaluation.run") if package_of(m) == "data"}


def test_at_most_four_modules_directly_in_ssad() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(loose) <= MAX_TOP_MODULES, loose


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {module_name(p): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {m: n for m, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_committed_results_name_no_path_of_a_machine() -> None:
    machine_path = re.compile(r"(^|[^A-Za-z0-9_.~-])/(home|root|tmp|work|Users|var/folders)/")
    found = {p.name for p in RESULTS.iterdir() if p.suffix in {".md", ".csv", ".json"} and machine_path.search(p.read_text())}
    assert found == set()
