"""The library's import graph: no cycles between modules or between packages (imports inside
functions included), every arrow pointing down the layers, nothing outside ``autotts/cli/``
importing the CLI or typer, no two modules sharing a name, and modules small enough to read."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "autotts"
MAX_LINES = 400
# The packages, lowest first: a module imports from its own package or from those below it
# (the package root ``autotts``, the public API, is exempt both ways: it re-exports names and
# lower modules read its version).
LAYERS = (
    ("autotts.errors", "autotts._moved", "autotts.utils"),
    ("autotts.core",),
    ("autotts.loading",),
    ("autotts.envs",),
    ("autotts.results",),
    ("autotts.sandbox",),
    ("autotts.evaluation",),
    ("autotts.live",),
    ("autotts.serving",),
    ("autotts.discovery",),
    ("autotts.collab",),
    ("autotts.cli",),
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for candidate in (target, *(f"{target}.{a.name}" for a in node.names)):
                if candidate in modules and candidate != name:
                    out.add(candidate)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in modules and a.name != name}
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    # a package's __init__ re-exporting its modules is not a dependency of those modules
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    assert _cycles(graph) == []


def test_only_the_cli_imports_the_cli_and_typer():
    modules = _modules()
    for name, path in modules.items():
        if name.startswith("autotts.cli"):
            continue
        text = path.read_text(encoding="utf-8")
        assert "import typer" not in text and "from typer" not in text, name
        assert not any(t.startswith("autotts.cli") for t in _imports(name, path, modules)), name


def test_modules_fit_in_your_head():
    long = {
        name: n
        for name, path in _modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_every_import_points_down_the_layers():
    modules = _modules()
    rank = {package: i for i, layer in enumerate(LAYERS) for package in layer}
    assert {_package(m) for m in modules} - {"autotts"} == set(rank), "a package without a layer"
    upward = []
    for name, path in modules.items():
        for target in _imports(name, path, modules):
            source, dest = _package(name), _package(target)
            if "autotts" in (source, dest) or source == dest:
                continue
            if rank[dest] > rank[source]:
                upward.append(f"{name} -> {target}")
    assert upward == []


def test_packages_form_no_loop():
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        source = _package(name)
        targets = {_package(t) for t in _imports(name, path, modules)} - {source, "autotts"}
        graph.setdefault(source, set()).update(targets)
    graph.pop("autotts", None)
    assert _cycles({k: v & set(graph) for k, v in graph.items()}) == []


def test_no_two_modules_share_a_name():
    names: dict[str, list[str]] = {}
    for name, path in _modules().items():
        if path.name != "__init__.py":
            names.setdefault(path.stem, []).append(name)
    assert {stem: where for stem, where in names.items() if len(where) > 1} == {}


def test_every_package_says_what_it_owns():
    for init in PACKAGE.rglob("__init__.py"):
        if "__pycache__" not in init.parts:
            assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))), init
