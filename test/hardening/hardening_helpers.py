"""Helpers for the hardening tests: run the rdu-* commands and check their one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "mlp" / "model.py"
DROPOUT_MLP = Path(__file__).resolve().parent / "models" / "dropout_mlp" / "model.py"
BIN = Path(sys.executable).parent
PYTHON = sys.executable

Result = subprocess.CompletedProcess


def tool(name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> Result:
    """Run an rdu-* console script; return the CompletedProcess (text)."""
    return subprocess.run(
        [str(BIN / name), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def tools(*commands: tuple[str, ...]) -> list[Result]:
    """Run several ``(name, *args)`` commands at once (two at a time: CI has two cores)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda command: tool(*command), commands))


def in_process(name: str, *args: str) -> Result:
    """An rdu-compile or rdu-run command run in this process (click's test runner): the same
    code, exit status and output as the command, without a second of imports each time."""
    from click.testing import CliRunner

    if name == "rdu-compile":
        from tools.rdu_compile import rdu_compile as command
    elif name == "rdu-run":
        from tools.rdu_run import rdu_run as command
    else:
        raise ValueError(f"no in-process runner for {name}")
    result = CliRunner().invoke(command, list(args))
    if name == "rdu-compile":
        import gc

        gc.unfreeze()  # the command freezes what is loaded (its process ends right after)
    return subprocess.CompletedProcess(
        [name, *args], result.exit_code, result.stdout, result.stderr
    )


def one_line_error(result: Result, code: int = 1) -> str:
    """The single stderr line of a refused command (exit ``code``, no traceback)."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def compile_model(model: Path, out: Path, *extra: str, env: dict[str, str] | None = None) -> Path:
    """rdu-compile ``model`` into ``out``; the PEF's path. A compile that only makes a PEF for a
    test runs in this process (``env`` asks for a process of its own)."""
    args = (str(model), "--output-folder", str(out), *extra)
    result = tool("rdu-compile", *args, env=env) if env else in_process("rdu-compile", *args)
    assert result.returncode == 0, result.stderr
    name = extra[extra.index("--pef-name") + 1] if "--pef-name" in extra else model.parent.name
    return out / name / f"{name}.pef"


def write_model(folder: Path, source: str) -> Path:
    """A model.py with ``source`` in its own folder under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.py"
    path.write_text(source)
    return path


def assert_same_weights(a: Path, b: Path) -> None:
    """Two checkpoints hold the same step, weights and optimizer state, bit for bit."""
    import torch

    x, y = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert x["step"] == y["step"]
    assert sorted(x["model"]) == sorted(y["model"])
    for key in x["model"]:
        assert torch.equal(x["model"][key], y["model"][key]), key
    for index, state in y["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(x["optimizer"]["state"][index][key], value), (index, key)


def assert_resumes_exactly(tmp: Path, pef: Path, checkpoint: Path, more: int = 2) -> None:
    """``more`` steps from ``checkpoint`` are the straight run's steps, bit for bit. The two
    runs are in this process: the subject is the checkpoint the stopped process left, and
    ``test_faults`` resumes one as a process of its own."""
    from runtime.checkpoint import load_checkpoint

    step = load_checkpoint(checkpoint)["step"]
    common = [str(MLP), "--pef", str(pef), "--ckpt-every", "0", "--num-steps", str(step + more)]
    resumed = in_process(
        "rdu-run", *common, "--ckpt-dir", str(tmp / "resumed"), "--init-ckpt-path", str(checkpoint)
    )
    straight = in_process("rdu-run", *common, "--ckpt-dir", str(tmp / "straight"))
    assert resumed.returncode == 0 and straight.returncode == 0, resumed.stderr + straight.stderr
    assert_same_weights(tmp / "resumed" / "last.pt", tmp / "straight" / "last.pt")
