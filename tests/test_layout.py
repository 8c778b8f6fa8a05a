"""The package's layout: no import circle between camkit's modules, and no module that grew past
500 lines unless it holds one algorithm (its docstring says which)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "camkit"
MAX_LINES = 500
ONE_ALGORITHM = "One algorithm:"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imported_names(tree: ast.Module, package: str) -> list[str]:
    """Every module name an import statement of ``tree`` reaches (``if TYPE_CHECKING:`` blocks
    never run and are left out); ``from X import a`` gives ``X.a`` and ``X``."""
    names, stack = [], list(tree.body)
    while stack:
        node = stack.pop()
        if _type_checking_only(node):
            continue
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
        stack.extend(ast.iter_child_nodes(node))
    return names


def import_graph() -> dict[str, set[str]]:
    """``module -> camkit modules it imports``, function-level imports included (``from camkit.x
    import name`` reaches ``camkit.x``, and ``camkit.x.name`` when that is a module)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for imported in _imported_names(ast.parse(path.read_text()), package):
            target = imported if imported in modules else imported.rpartition(".")[0]
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for neighbour in sorted(graph[node]):
            if neighbour not in index:
                visit(neighbour)
                low[node] = min(low[node], low[neighbour])
            elif neighbour in stack:
                low[node] = min(low[node], index[neighbour])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_sees_function_level_and_relative_imports():
    tree = ast.parse("def f():\n    from camkit.io import write_text\nfrom . import errors\n"
                     "if TYPE_CHECKING:\n    import camkit.plot\n")
    names = _imported_names(tree, "camkit.bench")
    assert "camkit.io.write_text" in names and "camkit.bench.errors" in names
    assert not any(name.startswith("camkit.plot") for name in names)


def test_no_import_circle_between_camkit_modules():
    graph = import_graph()
    assert "camkit.io" in graph["camkit.models.zoo"]  # the graph sees real edges
    assert cycles(graph) == []


def test_modules_hold_one_job_or_one_algorithm():
    long = {}
    for name, path in _modules().items():
        lines = len(path.read_text().splitlines())
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and ONE_ALGORITHM not in docstring:
            long[name] = lines
    assert long == {}, f"modules over {MAX_LINES} lines without '{ONE_ALGORITHM} ...' in their docstring"
