"""Helpers for the end-to-end tests: run the rdu-* commands, compile the MLP example."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "mlp" / "model.py"
BIN = Path(sys.executable).parent


def tool(name: str, *args: str, cwd: Path | None = None, env: dict | None = None):
    """Run an rdu-* console script; return the CompletedProcess (text)."""
    return subprocess.run(
        [str(BIN / name), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def compile_mlp(out: Path, *extra: str) -> Path:
    result = tool("rdu-compile", str(MLP), "--output-folder", str(out), *extra)
    assert result.returncode == 0, result.stderr
    name = extra[extra.index("--pef-name") + 1] if "--pef-name" in extra else "mlp"
    return out / name / f"{name}.pef"
