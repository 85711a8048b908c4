"""The shape of the package: the tree reads as the flow, imports run one way along it, and modules stay readable.

The flow: core <- data <- features <- models <- modelio <- scoring <- explain <- detector <- {evaluation, field}
<- cli. A sub-package imports only those before it (and core); synthesis imports only core; training (data
modules, their augmentation and the pretraining corpus) imports only core, data, synthesis, features and models,
and only cli imports it. The history (history) imports only core; field writes it, console reads it, and cli
opens both.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ssad"
RESULTS = PACKAGE.parent / "experiments" / "results"
MAX_MODULE_LINES = 600
#: modules directly in ssad/ besides __init__.py
MAX_TOP_MODULES = 6

FLOW = ("core", "data", "features", "models", "modelio", "scoring", "explain", "detector")
#: each sub-package -> the sub-packages it may import besides itself
ALLOWED: dict[str, set[str]] = {package: set(FLOW[:k]) for k, package in enumerate(FLOW)}
ALLOWED |= {
    "synthesis": {"core"},
    "training": {"core", "data", "synthesis", "features", "models"},
    "evaluation": set(FLOW),
    "history": {"core"},
    "field": {*FLOW, "history"},
    "console": {*FLOW, "history"},
    "cli": {*FLOW, "synthesis", "training", "evaluation", "history", "field", "console"},
}
#: old import paths kept for one release: they only re-export, and nothing inside ssad imports them
LEGACY = {"ssad.errors", "ssad.atomic", "ssad.engine", "ssad.inference"}
#: the one arrow against the flow: run configs name the data modules `ssad.data.<Class>` (their class_path)
CONFIG_NAMES = {("ssad.data", "ssad.training.datamodule"), ("ssad.data", "ssad.training.frame_windows"),
                ("ssad.data", "ssad.training.synth_corpus")}


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
    """Each ssad module's ssad imports, wherever in the file they stand (lazy ones too, not `TYPE_CHECKING` ones).

    A string that names an ssad module counts too: package faces import their members by name (`importlib`).
    """
    paths = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        type_only = {
            id(node)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for node in ast.walk(block)
        }
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
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
            if source is None or goal is None or goal == source or (module, target) in CONFIG_NAMES:
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
    assert "ssad.modelio" in graph["ssad.detector.detector"]
    assert import_cycles(graph) == []


def test_every_sub_package_has_its_place_in_the_flow() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(ALLOWED)


def test_imports_follow_the_flow() -> None:
    assert against_the_flow(import_graph()) == []


def test_only_cli_imports_training() -> None:
    graph = import_graph()
    importers = {package_of(m) for m, targets in graph.items() for t in targets if package_of(t) == "training"}
    assert importers - {"training"} <= {"cli", "data"}  # data: the config names only (CONFIG_NAMES)


def test_nothing_in_ssad_imports_an_old_path() -> None:
    graph = import_graph()
    assert {m: targets & LEGACY for m, targets in graph.items() if targets & LEGACY and m not in LEGACY} == {}


def test_old_paths_only_re_export() -> None:
    for name in LEGACY:
        tree = ast.parse((PACKAGE / f"{name.split('.')[1]}.py").read_text())
        body = [node for node in tree.body if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
        assert all(isinstance(node, ast.ImportFrom) for node in body), name


def test_evaluation_does_not_depend_on_training() -> None:
    graph = {m: {t for t in targets if (m, t) not in CONFIG_NAMES} for m, targets in import_graph().items()}
    assert not {m for m in reachable(graph, "ssad.evaluation.run") if package_of(m) == "training"}


def test_at_most_six_modules_directly_in_ssad() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(loose) <= MAX_TOP_MODULES, loose


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {module_name(p): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {m: n for m, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_committed_results_name_no_path_of_a_machine() -> None:
    machine_path = re.compile(r"(^|[^A-Za-z0-9_.~-])/(home|root|tmp|work|Users|var/folders)/")
    found = {p.name for p in RESULTS.iterdir() if p.suffix in {".md", ".csv", ".json"} and machine_path.search(p.read_text())}
    assert found == set()
