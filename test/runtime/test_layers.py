"""Who may import whom (``docs/design.md``, "Layers"): the compiler reads the runtime only
through the PEF format (``runtime.pef``) and the fabric's shared rules (``runtime.machine``); the
dialects read xdsl and the shared rules; the shared layer imports neither side (no compiler, no
dialects, no xdsl, no emulator or sessions, no torch, no numpy).

The compiler's and the dialects' imports are read from their source (every import, also those
inside functions); the shared layer's are checked by importing all of it in a subprocess that
blocks the other side, so what it imports through another module counts too."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = ("runtime.pef", "runtime.machine")
"""The runtime's packages the compiler and the dialects may import."""


def imported_modules(folder: Path) -> dict[str, set[str]]:
    """Every module each file under ``folder`` imports (absolute imports), by file."""
    found: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[str(path.relative_to(REPO))] = names
    return found


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _runtime_imports(folder: str) -> list[str]:
    """``file: module`` for every runtime module outside the shared layer a file imports (a
    ``from runtime import X`` counts as ``runtime.X``)."""
    wrong = []
    for path, names in imported_modules(REPO / folder).items():
        for name in sorted(names):
            if name == "runtime" or not name.startswith("runtime."):
                continue
            if not _within(name, SHARED):
                wrong.append(f"{path}: {name}")
    return wrong


def test_the_compiler_imports_only_the_pef_format_and_the_shared_rules_of_the_runtime() -> None:
    assert _runtime_imports("compiler") == []


def test_the_dialects_import_only_xdsl_and_the_shared_rules() -> None:
    assert _runtime_imports("dialects") == []
    for path, names in imported_modules(REPO / "dialects").items():
        others = [n for n in names if _within(n, ("compiler", "tools", "torch"))]
        assert others == [], path


SCRIPT = textwrap.dedent(
    """
    import importlib
    import importlib.abc
    import pkgutil
    import sys

    BLOCKED = (
        "xdsl", "dialects", "compiler", "tools", "torch", "numpy", "runtime.fabric",
        "runtime.session", "runtime.checkpoint", "runtime.distributed",
    )

    def blocked(name):
        return any(name == b or name.startswith(b + ".") for b in BLOCKED)

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if blocked(name):
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Blocker())
    for name in list(sys.modules):
        if blocked(name):
            del sys.modules[name]

    import runtime.machine
    import runtime.pef

    modules = []
    for package in (runtime.machine, runtime.pef):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            importlib.import_module(info.name)
            modules.append(info.name)
    assert "runtime.machine.opcodes" in modules and "runtime.pef.validate" in modules, modules
    leaked = sorted(m for m in sys.modules if blocked(m))
    assert not leaked, leaked
    print(len(modules))
    """
)


def test_the_shared_layer_imports_neither_side(tmp_path: Path) -> None:
    script = tmp_path / "shared.py"
    script.write_text(SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 10  # every module of both packages was imported
