"""rdu-run training is never silently wrong and never lost.

Refused before the first step (exit 1, one line, nothing written): bad numeric options, NaN or
out-of-range hyperparameters, output folders that cannot be, a NaN checkpoint. Stopped at the
step (exit 1, one line, ``last.pt`` of the last finite state): a NaN loss, a class label out of
range, ``data()`` raising, a malformed test batch, a full disk. Stopped like Ctrl-C: SIGTERM
(exit 143). In every stop the checkpoint on disk resumes bit for bit.
"""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from hardening_helpers import (
    MLP,
    PYTHON,
    assert_resumes_exactly,
    assert_same_weights,
    in_process,
    one_line_error,
    tool,
    tools,
    write_model,
)
from test_faults import INTERRUPT, start_training, wait_for_step

from runtime.checkpoint import load_checkpoint

STEPS_PER_EPOCH = 89  # the MLP example at batch 16: 1437 training rows

WRAPPED = """\
import importlib.util
import itertools

import numpy as np
import torch

_spec = importlib.util.spec_from_file_location("rdu_example_mlp", {mlp!r})
_mlp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mlp)
model, loss, optimizer, add_args = _mlp.model, _mlp.loss, _mlp.optimizer, _mlp.add_args
example_inputs, example_targets = _mlp.example_inputs, _mlp.example_targets


def data(split, args):
    batches = _mlp.data(split, args)
{body}
"""

DATA = {
    "nan-input": """\
    for i, ((x,), (y,)) in enumerate(batches):
        if split == "train" and i == 3:
            x = x.clone(); x[2, 5] = float("nan")
        yield (x,), (y,)""",
    "label-15": """\
    for i, ((x,), (y,)) in enumerate(batches):
        if split == "train" and i == 2:
            y = y.clone(); y[3] = 15
        yield (x,), (y,)""",
    "label-minus-1": """\
    for i, ((x,), (y,)) in enumerate(batches):
        if split == "train" and i == 2:
            y = y.clone(); y[0] = -1
        yield (x,), (y,)""",
    "ignore-index": """\
    for i, ((x,), (y,)) in enumerate(batches):
        y = y.clone(); y[0] = -100
        yield (x,), (y,)""",
    "raises-in-epoch-2": """\
    for i, batch in enumerate(batches):
        if split == "train" and args.epoch == 1 and i == 3:
            raise RuntimeError("the data server went away")
        yield batch""",
    "partial-test-batch": """\
    yield from batches
    if split == "test":
        yield (torch.zeros(5, 64),), (torch.zeros(5, dtype=torch.int64),)""",
    "never-ends": """\
    if split == "test":
        yield from itertools.islice(batches, 2)
        return
    yield from itertools.cycle(list(batches))""",
}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("run-stops")
    return {
        name: write_model(root / name, WRAPPED.format(mlp=str(MLP), body=body))
        for name, body in DATA.items()
    }


def run(model: Path, pef: Path, ckpt: Path, *extra: str) -> subprocess.CompletedProcess:
    """rdu-run of ``model`` (a model.py wrapping the MLP's, with other data code) on ``pef``."""
    return tool(
        "rdu-run", str(model), "--pef", str(pef), "--ckpt-dir", str(ckpt),
        "--allow-source-change", *extra,
    )  # fmt: skip


# -- refused before the first step -------------------------------------------------------------


def _refusals(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (options, the one-line error)."""
    (tmp / "a-file").write_text("not a folder\n")
    return {
        "lr-nan": (["--lr", "nan"], "--lr nan: lr must be a finite number >= 0"),
        "lr-negative": (["--lr", "-1"], "--lr -1.0: lr must be a finite number >= 0"),
        "momentum-inf": (["--momentum", "inf"], "--momentum inf: momentum must be a finite"),
        "momentum-1": (["--momentum", "1"], "--momentum 1.0: momentum must be a finite number in"),
        "weight-decay": (["--weight-decay", "-0.1"], "--weight-decay -0.1: weight_decay must be"),
        "num-steps": (["--num-steps", "-5"], "--num-steps -5: must be a whole number from 1 to"),
        "num-epochs": (["--num-epochs", "0"], "--num-epochs 0: must be a whole number from"),
        "log-every": (["--log-every", "0"], "--log-every 0: must be a whole number from 1"),
        "ckpt-every": (["--ckpt-every", "-1"], "--ckpt-every -1: must be a whole number from 0"),
        "seed": (["--seed", "-1"], "--seed -1: must be a whole number >= 0"),
        "ckpt-dir-file": (
            ["--ckpt-dir", str(tmp / "a-file")],
            f"--ckpt-dir {tmp / 'a-file'}: is a file, not a directory",
        ),
        "ckpt-dir-under-file": (
            ["--ckpt-dir", str(tmp / "a-file" / "ck")],
            f"--ckpt-dir {tmp / 'a-file' / 'ck'}: cannot be made: {tmp / 'a-file'} is a file",
        ),
        "results-dir-file": (
            ["--inference", "--results-dir", str(tmp / "a-file")],
            f"--results-dir {tmp / 'a-file'}: is a file, not a directory",
        ),
        # an option the mode would ignore
        "lr-with-test": (["--test", "--lr", "0.1"], "--lr is for training: leave it out with"),
        "steps-with-inference": (
            ["--inference", "--num-steps", "3"],
            "--num-steps is for training: leave it out with --inference",
        ),
        "results-dir-training": (
            ["--results-dir", str(tmp / "results")],
            "--results-dir is where --inference writes its results: add --inference",
        ),
        "reset-without-checkpoint": (
            ["--reset-optimizer"],
            "--reset-optimizer starts the optimizer state of --init-ckpt-path at zero: give one",
        ),
    }  # fmt: skip


def test_bad_options_are_refused_before_the_first_step(tmp_path: Path, mlp_pef: Path) -> None:
    cases = _refusals(tmp_path)
    commands = []
    for options, _ in cases.values():
        training = not {"--ckpt-dir", "--test", "--inference"} & set(options)
        ckpt = ["--ckpt-dir", str(tmp_path / "ck")] if training else []
        commands.append(("rdu-run", str(MLP), "--pef", str(mlp_pef), *ckpt, *options))
    results = tools(*commands)
    for (name, (_, expected)), result in zip(cases.items(), results, strict=True):
        error = one_line_error(result)
        assert error.startswith(f"rdu-run: error: {expected}"), (name, error)
        assert "step 1 " not in result.stdout, name
    assert not (tmp_path / "ck").exists()  # not a step, not a checkpoint


def test_a_nan_checkpoint_is_refused_naming_the_tensor(tmp_path: Path, mlp_pef: Path) -> None:
    good = run(MLP, mlp_pef, tmp_path / "ck", "--num-steps", "2")
    assert good.returncode == 0, good.stderr
    payload = torch.load(tmp_path / "ck" / "last.pt", weights_only=True)
    payload["model"]["fc2.bias"][3] = float("nan")
    torch.save(payload, tmp_path / "nan.pt")
    result = run(MLP, mlp_pef, tmp_path / "more", "--init-ckpt-path", str(tmp_path / "nan.pt"))
    assert one_line_error(result) == (
        f"rdu-run: error: {tmp_path / 'nan.pt'}: tensor 'fc2.bias' holds 1 NaN of 10 values"
    )
    assert not (tmp_path / "more").exists()


def test_resuming_at_or_past_the_target_says_so_and_writes_nothing(
    tmp_path: Path, mlp_pef: Path
) -> None:
    first = run(MLP, mlp_pef, tmp_path / "ck", "--num-steps", "4")
    assert first.returncode == 0, first.stderr
    last = tmp_path / "ck" / "last.pt"
    again = run(MLP, mlp_pef, tmp_path / "again", "--num-steps", "3", "--init-ckpt-path", str(last))
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert again.stderr == (
        f"rdu-run: nothing to train: {last} is at step 4, at or past the target step 3 "
        "(--num-steps 3, counted from step 0); wrote nothing\n"
    )
    assert again.stdout == "" and not (tmp_path / "again").exists()


# -- stopped at the step -----------------------------------------------------------------------


def test_a_nan_input_stops_the_run_with_the_last_finite_state(
    tmp_path: Path, mlp_pef: Path, models: dict[str, Path]
) -> None:
    """Batch 3 holds a NaN: step 4's loss is NaN; last.pt is step 3, the straight run's."""
    result = run(models["nan-input"], mlp_pef, tmp_path / "ck", "--num-steps", "10")
    last = tmp_path / "ck" / "last.pt"
    assert one_line_error(result) == (
        "rdu-run: error: step 4 (batch 3 of epoch 0): the loss is nan: input 'input.0' holds "
        f"1 NaN of 1024 values; stopped at step 4; wrote {last} (step 3, the last finite state)"
    )
    straight = run(MLP, mlp_pef, tmp_path / "straight", "--num-steps", "3")
    assert straight.returncode == 0, straight.stderr
    assert_same_weights(last, tmp_path / "straight" / "last.pt")


def test_a_diverging_run_stops_at_the_first_nan_loss(tmp_path: Path, mlp_pef: Path) -> None:
    result = run(MLP, mlp_pef, tmp_path / "ck", "--num-steps", "50", "--lr", "1e30")
    error = one_line_error(result)
    found = re.fullmatch(
        r"rdu-run: error: step (\d+) \(batch \d+ of epoch 0\): the loss is (nan|inf): the batch "
        r"and the hyperparameters are finite: training diverged \(lower --lr\?\); stopped at "
        r"step \1; (wrote \S+ \(step \d+, the last finite state\)|wrote no checkpoint: .*)",
        error,
    )
    assert found, error
    if (tmp_path / "ck" / "last.pt").exists():
        state = load_checkpoint(tmp_path / "ck" / "last.pt")
        assert state["step"] == int(found.group(1)) - 1
        assert all(torch.isfinite(torch.from_numpy(v)).all() for v in state["model"].values())


@pytest.mark.parametrize(("case", "value", "row"), [("label-15", 15, 3), ("label-minus-1", -1, 0)])
def test_a_label_out_of_range_stops_the_run_naming_it(
    tmp_path: Path, mlp_pef: Path, models: dict[str, Path], case: str, value: int, row: int
) -> None:
    result = run(models[case], mlp_pef, tmp_path / "ck", "--num-steps", "10")
    last = tmp_path / "ck" / "last.pt"
    assert one_line_error(result) == (
        f"rdu-run: error: step 3 (batch 2 of epoch 0): label 'target.0' row {row} is {value}, "
        "outside the 10 classes [0, 10) of output.0 (torch's cross_entropy raises); "
        f"stopped at step 2; wrote {last}"
    )
    assert load_checkpoint(last)["step"] == 2


def test_cross_entropys_ignore_index_is_accepted(
    tmp_path: Path, mlp_pef: Path, models: dict[str, Path]
) -> None:
    result = run(models["ignore-index"], mlp_pef, tmp_path / "ck", "--num-steps", "3")
    assert result.returncode == 0, result.stderr


def test_a_malformed_test_batch_keeps_the_training(
    tmp_path: Path, mlp_pef: Path, models: dict[str, Path]
) -> None:
    result = run(models["partial-test-batch"], mlp_pef, tmp_path / "ck", "--num-steps", "3")
    last = tmp_path / "ck" / "last.pt"
    error = one_line_error(result)
    assert error.startswith("rdu-run: error: input 'input.0' has shape [5, 64]"), error
    assert error.endswith(
        f"; evaluating test batch 22 after epoch 0; stopped at step 3; wrote {last}"
    ), error
    assert_resumes_exactly(tmp_path, mlp_pef, last)


def test_data_that_never_ends_is_drawn_lazily(
    tmp_path: Path, mlp_pef: Path, models: dict[str, Path]
) -> None:
    result = run(models["never-ends"], mlp_pef, tmp_path / "ck", "--num-steps", "5")
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(tmp_path / "ck" / "last.pt")["step"] == 5


def test_a_full_disk_at_a_step_checkpoint_still_writes_last_pt(
    tmp_path: Path, mlp_pef: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC simulated in-process (no tmpfs to fill here): step-2.pt fails, last.pt is
    written (as when old step checkpoints are deleted meanwhile, or last.pt fits)."""
    import runtime.checkpoint

    writer = runtime.checkpoint.atomic_writer

    def full(path):  # type: ignore[no-untyped-def]
        if Path(path).name.startswith("step-"):
            raise OSError(28, "No space left on device", str(path))
        return writer(path)

    monkeypatch.setattr(runtime.checkpoint, "atomic_writer", full)
    ckpt = tmp_path / "ck"
    result = in_process(
        "rdu-run", str(MLP), "--pef", str(mlp_pef), "--ckpt-dir", str(ckpt),
        "--num-steps", "5", "--ckpt-every", "2",
    )  # fmt: skip
    assert one_line_error(result) == (
        f"rdu-run: error: {ckpt / 'step-2.pt'}: cannot write the checkpoint: No space left on "
        f"device; stopped at step 2; wrote {ckpt / 'last.pt'}"
    )
    assert load_checkpoint(ckpt / "last.pt")["step"] == 2


def test_a_disk_that_fills_up_stops_the_run_and_the_last_checkpoint_resumes_exactly(
    tmp_path: Path, mlp_pef: Path, small_disk: Path
) -> None:
    """A real full disk (a 1 MiB tmpfs), a checkpoint a step: the step whose checkpoint does not
    fit stops the run in one line naming the newest checkpoint, which resumes bit for bit; no
    temporary file is left behind."""
    ckpt = small_disk / "ck"
    result = tool(
        "rdu-run", str(MLP), "--pef", str(mlp_pef), "--ckpt-dir", str(ckpt), "--num-steps",
        "100", "--ckpt-every", "1", "--log-every", "50",
    )  # fmt: skip
    error = one_line_error(result)
    full = "cannot write the checkpoint: No space left on device"
    found = re.fullmatch(
        rf"rdu-run: error: {re.escape(str(ckpt))}/step-(\d+)\.pt: {full}; stopped at step \1; "
        rf"{re.escape(str(ckpt / 'last.pt'))}: {full} \(the newest checkpoint there: "
        r"step-(\d+)\.pt\)",
        error,
    )
    assert found, error
    stopped, newest = int(found.group(1)), int(found.group(2))
    assert newest == stopped - 1
    assert sorted(p.name for p in ckpt.iterdir()) == sorted(
        [*(f"step-{n}.pt" for n in range(1, stopped)), "metrics.csv"]
    )
    assert_resumes_exactly(tmp_path, mlp_pef, ckpt / f"step-{newest}.pt")


# -- killed: the checkpoint on disk resumes exactly -------------------------------------------


def test_data_raising_in_epoch_2_keeps_the_training(
    tmp_path: Path, mlp_pef: Path, models: dict[str, Path]
) -> None:
    result = run(models["raises-in-epoch-2"], mlp_pef, tmp_path / "ck", "--num-epochs", "3")
    last = tmp_path / "ck" / "last.pt"
    step = STEPS_PER_EPOCH + 3
    assert one_line_error(result) == (
        f"rdu-run: error: {models['raises-in-epoch-2']}:18: data('train') raised RuntimeError: "
        f"the data server went away; stopped at step {step}; wrote {last}"
    )
    assert load_checkpoint(last)["step"] == step
    assert_resumes_exactly(tmp_path, mlp_pef, last)


@pytest.mark.parametrize(
    ("signum", "code", "what"),
    [(signal.SIGTERM, 143, "terminated"), (signal.SIGHUP, 129, "hung up")],
)
def test_sigterm_and_sighup_stop_like_ctrl_c(
    tmp_path: Path, mlp_pef: Path, signum: int, code: int, what: str
) -> None:
    """A job scheduler's stop, or the terminal (an ssh session) closing."""
    proc = start_training(mlp_pef, tmp_path / "ck", "--ckpt-every", "0")
    wait_for_step(proc, 5)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == code, err
    found = re.fullmatch(rf"{what} at step (\d+); wrote (\S+)\n", err)
    assert found, err
    assert Path(found.group(2)) == tmp_path / "ck" / "last.pt"
    assert load_checkpoint(found.group(2))["step"] == int(found.group(1)) >= 5
    assert_resumes_exactly(tmp_path, mlp_pef, Path(found.group(2)))


def test_ctrl_c_twice_stops_once_with_a_whole_checkpoint(tmp_path: Path, mlp_pef: Path) -> None:
    proc = start_training(mlp_pef, tmp_path / "ck", "--ckpt-every", "0")
    wait_for_step(proc, 5)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    found = re.fullmatch(r"interrupted at step (\d+); wrote (\S+)\n", err)
    assert found, err
    assert_resumes_exactly(tmp_path, mlp_pef, Path(found.group(2)))


def test_ctrl_c_again_during_the_final_write_is_ignored(tmp_path: Path, mlp_pef: Path) -> None:
    """Ctrl-C, then two more and a SIGTERM while last.pt is being written (sent by the
    process itself as the write ends): one line, no traceback, a whole checkpoint."""
    proc = subprocess.Popen(
        [PYTHON, str(INTERRUPT), "ctrl-c-again", "last.pt", "rdu-run", str(MLP), "--pef",
         str(mlp_pef), "--num-epochs", "1000", "--log-every", "1", "--ckpt-every", "0",
         "--ckpt-dir", str(tmp_path / "ck")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    wait_for_step(proc, 5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    found = re.fullmatch(r"interrupted at step (\d+); wrote (\S+)\n", err)
    assert found, err
    assert_resumes_exactly(tmp_path, mlp_pef, Path(found.group(2)))
