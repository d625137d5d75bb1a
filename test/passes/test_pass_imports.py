"""The passes share code through modules no pass owns (``ir_helpers``, ``routing``,
``placement``, ``tiling``...): no pass module imports another pass's module, and no module of the
passes' layer (``compiler/passes``, ``compiler/*.py``) imports another module's private
(``_``-prefixed) names."""

from __future__ import annotations

import ast
from pathlib import Path

from compiler.passes import all_passes

ROOT = Path(__file__).resolve().parents[2]
PASS_MODULES = {f"compiler.passes.{factory.__name__}" for factory in all_passes().values()}


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every ``import`` / ``from ... import`` of ``path``."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names = [alias.name for alias in node.names]
            found.append((node.module, names))
            found += [(f"{node.module}.{name}", []) for name in names]  # a module imported
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
    return found


def test_the_pass_module_names_are_the_registered_passes() -> None:
    for module in PASS_MODULES:
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module


def test_no_pass_imports_another_pass() -> None:
    offenders = []
    for module in sorted(PASS_MODULES):
        path = ROOT / (module.replace(".", "/") + ".py")
        for imported, _ in _imports(path):
            if imported in PASS_MODULES and imported != module:
                offenders.append(f"{module} imports {imported}")
    assert offenders == []


def test_no_pass_layer_module_imports_private_names() -> None:
    offenders = []
    for path in sorted(
        [*(ROOT / "compiler").glob("*.py"), *(ROOT / "compiler/passes").glob("*.py")]
    ):
        for imported, names in _imports(path):
            if not imported.startswith(("compiler", "dialects", "runtime")):
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                offenders.append(f"{path.relative_to(ROOT)}: {private} from {imported}")
    assert offenders == []
