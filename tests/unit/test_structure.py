"""The package's structure, read from its source: no import cycles (function-level imports included,
``TYPE_CHECKING`` blocks excluded), and one implementation of each shared idea."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "factory"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """Line numbers inside ``if TYPE_CHECKING:`` blocks."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(module: str, path: Path) -> set[str]:
    """factory modules ``module`` imports anywhere in its body (``from a import b`` names the module
    ``a.b`` when that is a module, else ``a``)."""
    tree = ast.parse(path.read_text())
    skipped = _type_checking_blocks(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in MODULES and name != module)
    return found


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(GRAPH[node]):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for module in sorted(GRAPH):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_the_import_graph_is_read():
    assert "factory.pipeline" in GRAPH["factory.flow"] and "factory.think" in GRAPH["factory.stages.verify"]


def test_no_import_cycles():
    cycle = _cycle()
    assert cycle is None, " -> ".join(cycle)


def test_production_code_names_the_tiny_kit_only_to_resolve_tiny_models():
    users = sorted(m for m, imports in GRAPH.items() if "factory.tiny" in imports and not m.startswith("factory.tiny"))
    assert users == ["factory.cli", "factory.models"]


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string constant that is not documentation (a docstring, an attribute
    docstring: any string that is a statement of its own)."""
    tree = ast.parse(path.read_text())
    docs = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs]


def _sites(predicate) -> list[str]:
    return sorted(f"{path.relative_to(PACKAGE.parent)}:{line}" for path in MODULES.values()
                  for line, text in _code_strings(path) if predicate(text))


def test_one_definition_of_the_think_tags():
    """Code that writes the tags (a constant, a piece of an f-string) uses factory.think's; prose may name them."""
    sites = _sites(lambda text: ("</think>" in text or "<think>" in text) and len(text.strip()) <= 30)
    assert len(sites) == 2 and {site.split(":")[0] for site in sites} == {"factory/think.py"}, sites


def test_one_file_level_replace():
    assert sorted(m for m, p in MODULES.items() if "os.replace(" in p.read_text()) == ["factory.atomic"]


def test_one_drop_marking_helper():
    assigning = sorted(m for m, p in MODULES.items()
                       if '"drop_reason", pc.' in p.read_text() or 'with_column(table, "drop_reason"' in p.read_text())
    assert assigning == ["factory.rows"]


def test_one_helper_collects_a_dataset_into_a_table():
    assert sorted(m for m, p in MODULES.items() if "to_arrow_refs(" in p.read_text()) == ["factory.rows"]


def test_one_table_of_eval_fields_rendered_by_the_cli_and_the_report():
    assert "factory.eval_fields" in GRAPH["factory.summary"] and "factory.eval_fields" in GRAPH["factory.report"]
    labels = _sites(lambda text: text in ("output tok/s", "latency p50", "peak RSS"))
    assert {site.split(":")[0] for site in labels} == {"factory/eval_fields.py"}
