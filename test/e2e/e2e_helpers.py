"""Helpers for the end-to-end tests: run the rdu-* commands (as processes, or in this process
where what they compute is the subject), compile the MLP example, train on the fabric beside
torch."""

from __future__ import annotations

import fcntl
import itertools
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from runtime.pef import read_pef
from runtime.session import TrainingSession

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


def in_process(name: str, *args: str) -> subprocess.CompletedProcess:
    """An rdu-compile, rdu-test or rdu-run command run in this process (click's test runner):
    the same code, exit status and output as the command, without its seconds of imports.

    For the tests whose subject is what the command computes; its exit codes and one-line
    errors as a process are ``test/hardening``'s. An exception the command did not turn into
    its one-line error (``--debug``) is appended to stderr with its traceback."""
    import gc
    import traceback

    from click.testing import CliRunner

    from tools.rdu_compile import rdu_compile
    from tools.rdu_run import rdu_run
    from tools.rdu_test import rdu_test

    commands = {"rdu-compile": rdu_compile, "rdu-run": rdu_run, "rdu-test": rdu_test}
    result = CliRunner().invoke(commands[name], list(args))
    if name == "rdu-compile":
        # The command freezes what is loaded (its process ends right after): unfreeze it, so
        # that what this compile left behind can be collected before the next one.
        gc.unfreeze()
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        assert result.exc_info is not None
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return subprocess.CompletedProcess([name, *args], result.exit_code, result.stdout, stderr)


def shared_compile(
    tmp_path_factory: pytest.TempPathFactory, model: Path, name: str, *args: str
) -> Path:
    """The PEF of ``rdu-compile model --pef-name name *args``, compiled once per test session
    for every test that asks for it under the same ``name`` and ``args``, whichever test and
    xdist worker asks first (the others wait on a lock): for a compile that takes tens of
    seconds and is the starting point of tests in several files (MobileNetV2's). Only for
    tests that read the PEF and write nothing beside it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' basetemps sit side by side in this session's folder
    folder = root / "shared-pefs" / name
    folder.mkdir(parents=True, exist_ok=True)
    pef = folder / name / f"{name}.pef"
    asked = [str(model), "--pef-name", name, *args]
    with open(folder / "lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.seek(0)
        if lock.read().splitlines() != asked or not pef.exists():
            assert not pef.exists(), f"{pef}: asked for with other arguments: {asked}"
            result = in_process("rdu-compile", *asked, "--output-folder", str(folder))
            assert result.returncode == 0, result.stderr
            lock.seek(0)
            lock.truncate()
            lock.write("\n".join(asked) + "\n")
    return pef


def rdu_test(model: Path, pef: Path, *extra: str) -> dict[str, Any]:
    """Run ``rdu-test --json`` at its default tolerances; assert it passes; return its report
    (``sections``: kind -> verdict, ``tensors``: one row a tensor)."""
    import json

    result = in_process("rdu-test", str(model), "--pef", str(pef), "--json", *extra)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    report = json.loads(result.stdout)
    assert report["verdict"] == "pass"
    return report


def judged(report: dict[str, Any], section: str) -> set[str]:
    """The tensors ``rdu-test`` judged within tolerance in ``section``."""
    return {t["name"] for t in report["tensors"] if t["section"] == section and t["ok"]}


def compile_mlp(out: Path, *extra: str) -> Path:
    result = in_process("rdu-compile", str(MLP), "--output-folder", str(out), *extra)
    assert result.returncode == 0, result.stderr
    name = extra[extra.index("--pef-name") + 1] if "--pef-name" in extra else "mlp"
    return out / name / f"{name}.pef"


def losses_beside_torch(
    session: TrainingSession,
    model_file: Any,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[tuple[tuple[torch.Tensor], tuple[torch.Tensor]]],
    hyper: dict[str, float],
    precision: str = "fp32",
) -> tuple[np.ndarray, np.ndarray]:
    """One training step on the fabric and one in torch per batch ``((x,), (y,))``: the losses of
    each, step by step. ``precision``: torch's forward and loss run as ``rdu-compile
    --precision`` traces them (``bf16-mixed``: under autocast)."""
    from compiler.frontend.trace import precision_context

    fabric_losses, torch_losses = [], []
    for (x,), (y,) in batches:
        fabric_losses.append(
            session.step({"input.0": x.numpy(), "target.0": y.numpy()}, hyper).loss
        )
        optimizer.zero_grad()
        with precision_context(precision):
            loss = model_file.call("loss", model(x), y)
        loss.backward()
        optimizer.step()
        torch_losses.append(loss.item())
    return np.array(fabric_losses), np.array(torch_losses)


def adamw_losses_beside_torch(
    model_file: Any, args: Any, pef: Path, steps: int, precision: str = "fp32"
) -> tuple[np.ndarray, np.ndarray]:
    """``losses_beside_torch`` for ``steps`` batches of a model trained with its own AdamW: the
    fabric's session and torch's model start from the model built at seed 0, and the fabric
    takes torch's hyperparameters."""
    torch.manual_seed(0)
    model = model_file.call("model", args)
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    session = TrainingSession(read_pef(pef), state)
    optimizer = model_file.call("optimizer", model.parameters(), args)
    assert isinstance(optimizer, torch.optim.AdamW)
    group = optimizer.param_groups[0]
    hyper = {"lr": group["lr"], "weight_decay": group["weight_decay"], "eps": group["eps"]}
    hyper["beta1"], hyper["beta2"] = group["betas"]
    batches = itertools.islice(model_file.batches("train", args), steps)
    return losses_beside_torch(session, model_file, model, optimizer, batches, hyper, precision)
