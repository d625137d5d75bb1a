"""Faults lose nothing: Ctrl-C, kill -9 and interrupted writes leave the last complete
checkpoint or PEF in place; a resumed run is the straight run, bit for bit; builds repeat."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from hardening_helpers import (
    BIN,
    DROPOUT_MLP,
    MLP,
    PYTHON,
    compile_model,
    one_line_error,
    tool,
)

from runtime.checkpoint import load_checkpoint
from runtime.pef import read_pef

INTERRUPT = Path(__file__).resolve().parent / "interrupt_at_write.py"


def interrupted(mode: str, target: str, *command: str) -> subprocess.CompletedProcess:
    """``command`` run by interrupt_at_write.py (``mode`` at the write to ``target``)."""
    return subprocess.run(
        [PYTHON, str(INTERRUPT), mode, target, *command],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


def start_training(pef: Path, ckpt_dir: Path, *extra: str) -> subprocess.Popen:
    """A long rdu-run training, SIGHUP at its default even under ``nohup``."""
    return subprocess.Popen(
        [str(BIN / "rdu-run"), str(MLP), "--pef", str(pef), "--num-epochs", "1000"]
        + ["--log-every", "1", "--ckpt-dir", str(ckpt_dir), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
    )


def wait_for_step(proc: subprocess.Popen, step: int, timeout: float = 300) -> None:
    """Read the run's lines until it reports ``step`` (it prints one line a step)."""
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(f"step {step} "):
            return
        assert time.monotonic() < deadline, "the run did not get there in time"
    assert proc.stderr is not None
    raise AssertionError(f"the run ended before step {step}: {proc.stderr.read()}")


def visible_checkpoints(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.pt") if not p.name.startswith("."))


# -- training ------------------------------------------------------------------------------------


def test_ctrl_c_stops_after_a_final_checkpoint_that_resumes_exactly(
    tmp_path: Path, mlp_pef: Path
) -> None:
    proc = start_training(mlp_pef, tmp_path / "ck", "--ckpt-every", "0")
    wait_for_step(proc, 5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    found = re.fullmatch(r"interrupted at step (\d+); wrote (\S+)\n", err)
    assert found, err
    step, path = int(found.group(1)), Path(found.group(2))
    assert step >= 5 and path == tmp_path / "ck" / "last.pt"
    checkpoint = load_checkpoint(path)
    assert checkpoint["step"] == step
    assert checkpoint["optimizer"] is not None and checkpoint["optimizer"]["state"]

    # Nothing was lost: three more steps from it are three more steps of a straight run.
    common = [str(MLP), "--pef", str(mlp_pef), "--ckpt-every", "0", "--num-steps", str(step + 3)]
    with ThreadPoolExecutor(2) as pool:
        resumed, straight = pool.map(
            lambda args: tool("rdu-run", *args),
            [
                [*common, "--ckpt-dir", str(tmp_path / "resumed"), "--init-ckpt-path", str(path)],
                [*common, "--ckpt-dir", str(tmp_path / "straight")],
            ],
        )
    assert resumed.returncode == 0 and straight.returncode == 0, resumed.stderr + straight.stderr
    a = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == step + 3
    for key in b["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


@pytest.mark.parametrize("after_step", [2, 6])
def test_kill_9_at_any_moment_leaves_loadable_checkpoints(
    tmp_path: Path, mlp_pef: Path, after_step: int
) -> None:
    """A checkpoint every step, killed a little after a step: every checkpoint there loads."""
    proc = start_training(mlp_pef, tmp_path, "--ckpt-every", "1")
    wait_for_step(proc, after_step)
    time.sleep(0.003 * after_step)  # somewhere in the next steps or their writes
    proc.kill()
    proc.communicate(timeout=60)
    found = visible_checkpoints(tmp_path)
    assert found, "no checkpoint written"
    for path in found:
        name = re.fullmatch(r"step-(\d+)\.pt", path.name)
        assert name, path
        step = int(name.group(1))
        assert load_checkpoint(path)["step"] == step


def test_kill_9_while_writing_a_checkpoint_keeps_the_previous_one(
    tmp_path: Path, mlp_pef: Path
) -> None:
    ckpt = tmp_path / "ck"
    common = ["rdu-run", str(MLP), "--pef", str(mlp_pef), "--ckpt-dir", str(ckpt)]
    first = tool(*common, "--num-steps", "2", "--ckpt-every", "1")
    assert first.returncode == 0, first.stderr
    before = (ckpt / "last.pt").read_bytes()
    # Resumed, killed as step-3.pt's finished temporary file is about to be moved into place.
    killed = interrupted(
        "kill", "step-3.pt", *common, "--num-steps", "6", "--ckpt-every", "1",
        "--init-ckpt-path", str(ckpt / "last.pt"),
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert [p.name for p in visible_checkpoints(ckpt)] == ["last.pt", "step-1.pt", "step-2.pt"]
    assert (ckpt / "last.pt").read_bytes() == before
    assert load_checkpoint(ckpt / "last.pt")["step"] == 2
    # Killed while writing last.pt over the old one: the old one stays whole.
    killed = interrupted(
        "kill", "last.pt", *common, "--num-steps", "4", "--ckpt-every", "0",
        "--init-ckpt-path", str(ckpt / "last.pt"),
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (ckpt / "last.pt").read_bytes() == before


# -- compiling -----------------------------------------------------------------------------------


def test_an_interrupted_compile_never_replaces_a_good_pef(tmp_path: Path, mlp_pef: Path) -> None:
    out = tmp_path / "out"
    good = out / "mlp" / "mlp.pef"
    good.parent.mkdir(parents=True)
    shutil.copyfile(mlp_pef, good)
    before = good.read_bytes()
    command = ["rdu-compile", str(MLP), "--output-folder", str(out), "--hidden", "32"]
    with ThreadPoolExecutor(2) as pool:
        killed, stopped = pool.map(
            lambda mode: interrupted(mode, ".pef", *command), ["kill", "ctrl-c"]
        )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert one_line_error(stopped, 130) == "rdu-compile: error: interrupted"
    assert good.read_bytes() == before
    read_pef(good)
    # Ctrl-C cleaned up its temporary file; kill -9 could not (a hidden .mlp.pef.*.tmp).
    assert [p.name for p in good.parent.glob("*.pef")] == ["mlp.pef"]


@pytest.mark.parametrize("small_disk", ["64k"], indirect=True)
def test_a_compile_on_a_full_disk_names_the_file_and_leaves_no_torn_file(
    small_disk: Path, mlp_pef: Path
) -> None:
    """A real full disk (a 64 KiB tmpfs) part way through the stage files: one line naming the
    file that did not fit; the files written are whole (written atomically), none torn."""
    result = tool("rdu-compile", str(MLP), "--output-folder", str(small_disk))
    error = one_line_error(result)
    found = re.fullmatch(
        rf"rdu-compile: error: cannot write {re.escape(str(small_disk / 'mlp'))}/(mlp\.\w+\.mlir): "
        "No space left on device",
        error,
    )
    assert found, error
    written = sorted(p.name for p in (small_disk / "mlp").iterdir())
    assert found.group(1) not in written and not any(n.startswith(".") for n in written)
    assert written
    for name in written:  # every file there is whole: what a compile on a roomy disk writes
        assert (small_disk / "mlp" / name).read_bytes() == (mlp_pef.parent / name).read_bytes()


def test_compiling_twice_gives_byte_identical_pefs(tmp_path: Path, mlp_pef: Path) -> None:
    """Another folder, another hash seed (set and dict orders), the same bytes."""
    seed = "12345" if os.environ.get("PYTHONHASHSEED") != "12345" else "54321"
    again = compile_model(MLP, tmp_path, env={"PYTHONHASHSEED": seed})
    assert again.read_bytes() == mlp_pef.read_bytes()
    stages = sorted(p.name for p in mlp_pef.parent.glob("mlp.*.mlir"))
    assert stages and stages == sorted(p.name for p in again.parent.glob("mlp.*.mlir"))
    for name in stages:  # every stage's IR too
        assert (again.parent / name).read_text() == (mlp_pef.parent / name).read_text(), name


# -- resuming ------------------------------------------------------------------------------------


def test_resume_is_bit_exact_with_dropout_and_adamw(tmp_path: Path) -> None:
    """N steps, a checkpoint, N resumed steps == 2N straight, across an epoch boundary: the
    data order, dropout's random stream, AdamW's moments and step count all carry over."""
    pef = compile_model(DROPOUT_MLP, tmp_path / "out", "-b", "64")  # 22 steps an epoch
    common = [str(DROPOUT_MLP), "--pef", str(pef), "--ckpt-every", "0", "--log-every", "1"]
    with ThreadPoolExecutor(2) as pool:
        straight, first = pool.map(
            lambda args: tool("rdu-run", *args),
            [
                [*common, "--num-steps", "30", "--ckpt-dir", str(tmp_path / "straight")],
                [*common, "--num-steps", "15", "--ckpt-dir", str(tmp_path / "split")],
            ],
        )
    second = tool(
        "rdu-run", *common, "--num-steps", "30", "--ckpt-dir", str(tmp_path / "split"),
        "--init-ckpt-path", str(tmp_path / "split" / "last.pt"),
    )  # fmt: skip
    for result in (straight, first, second):
        assert result.returncode == 0, result.stderr

    def steps(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith("step ")]

    # Every step's loss and accuracy (so each batch and each dropout mask) is the same.
    assert len(steps(straight.stdout)) == 30
    assert steps(first.stdout) + steps(second.stdout) == steps(straight.stdout)
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 30
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    state_a, state_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sorted(state_a) == sorted(state_b) and state_a
    for index in state_a:
        assert sorted(state_a[index]) == ["exp_avg", "exp_avg_sq", "step"]
        for key in state_a[index]:
            assert torch.equal(state_a[index][key], state_b[index][key]), (index, key)
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
