"""No module-level mutable cache in ``compiler/``: what one compile learns stays with that compile
(a pass's options, a ``Locator``, a printer), so two compiles in one process (the tests, the
explorer, ``rdu-test``) never see each other's state.

Read from the source: no ``functools.cache``/``lru_cache``, no ``global`` statement, and no
function that writes into a module-level dict, list or set (a table written once at import,
``_LOWER`` say, is a constant)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MUTATORS = {"append", "extend", "insert", "add", "update", "setdefault", "pop", "clear", "remove"}


def _module_containers(tree: ast.Module) -> set[str]:
    """Names the module binds to a dict, list or set (a display or a call of the type)."""
    names: set[str] = set()
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        container = isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp))
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
            container |= value.func.id in ("dict", "list", "set", "defaultdict")
        if container:
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def _written(function: ast.FunctionDef | ast.AsyncFunctionDef, names: set[str]) -> set[str]:
    """The module-level containers ``function`` writes into (not those it rebinds locally)."""
    local = {
        t.id
        for node in ast.walk(function)
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign))
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(t, ast.Name)
    }
    local |= {a.arg for a in ast.walk(function.args) if isinstance(a, ast.arg)}
    found: set[str] = set()
    for node in ast.walk(function):
        target: ast.expr | None = None
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
            for t in node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]:
                if isinstance(t, ast.Subscript):
                    target = t.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in MUTATORS:
                target = node.func.value
        if isinstance(target, ast.Name) and target.id in names and target.id not in local:
            found.add(target.id)
    return found


def module_state(path: Path) -> list[str]:
    """What in ``path`` keeps state across calls at module level."""
    tree = ast.parse(path.read_text(), str(path))
    containers = _module_containers(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            found.append(f"line {node.lineno}: global {', '.join(node.names)}")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for decorator in node.decorator_list:
                name = ast.unparse(decorator)
                if name.split("(")[0].split(".")[-1] in ("cache", "lru_cache"):
                    found.append(f"line {node.lineno}: @{name} {node.name}")
            for name in sorted(_written(node, containers)):
                found.append(f"line {node.lineno}: {node.name} writes module-level {name}")
    return found


def test_the_compiler_keeps_no_module_level_state() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} {what}"
        for path in sorted((ROOT / "compiler").rglob("*.py"))
        for what in module_state(path)
    ]
    assert offenders == []


def test_the_check_sees_a_cache(tmp_path: Path) -> None:
    path = tmp_path / "cached.py"
    path.write_text(
        "import functools\n_SEEN: dict[str, int] = {}\n\n"
        "@functools.lru_cache\ndef f(x): return x\n\n"
        "def g(k): _SEEN[k] = 1\n\n"
        "def h(k): _SEEN.setdefault(k, 2)\n\n"
        "def ok(k):\n    _SEEN = {}\n    _SEEN[k] = 3\n"
    )
    assert [what.split(": ", 1)[1] for what in module_state(path)] == [
        "@functools.lru_cache f",
        "g writes module-level _SEEN",
        "h writes module-level _SEEN",
    ]
