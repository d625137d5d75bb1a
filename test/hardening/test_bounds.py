"""Huge sizes and counts are refused before anything is allocated or run: a batch larger than
the target's off-chip memory or this machine's memory (rdu-compile ``-b``, a PEF of such a
batch in rdu-run), step counts beyond the 2**24 a run counts, a --world-size or --dp-timeout
beyond reason. Each in one line, exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from hardening_helpers import MLP, in_process, one_line_error, tool

from runtime.checkpoint import load_checkpoint

HUGE = str(10**30)


def test_a_huge_batch_is_refused_before_it_is_allocated(tmp_path: Path) -> None:
    """25.6 GB of example inputs: refused from the shapes alone (torch's meta device)."""
    result = tool("rdu-compile", str(MLP), "-b", "100000000", "--output-folder", str(tmp_path))
    assert one_line_error(result) == (
        f"rdu-compile: error: {MLP}: tensor 'example_inputs()[0]' [100000000, 64] float32 is "
        "25600000000 bytes (24414.1 MiB), more than the 16384.0 MiB of off-chip memory of "
        "target 'plasticine'"
    )
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("check", [False, True])
def test_a_batch_larger_than_this_machine_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, check: bool
) -> None:
    """sn10's 1.5 TB of off-chip memory holds it; a machine of 1 MiB does not."""
    import tools.rdu_compile

    monkeypatch.setattr(tools.rdu_compile, "host_memory_bytes", lambda: 2**20)
    extra = ["--check"] if check else ["--output-folder", str(tmp_path)]
    result = in_process("rdu-compile", str(MLP), "-b", "10000", "--arch", "sn10", *extra)
    assert one_line_error(result) == (
        "rdu-compile: error: -b 10000: the example batch would take 2.5 MiB "
        "(example_inputs()[0] is [10000, 64] float32), more than this machine's 1.0 MiB of memory"
    )


def test_a_pef_larger_than_this_machine_is_refused_before_it_runs(
    mlp_pef: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tools.rdu_run

    monkeypatch.setattr(tools.rdu_run, "host_memory_bytes", lambda: 2**10)
    result = in_process("rdu-run", str(MLP), "--pef", str(mlp_pef), "--test")
    error = one_line_error(result)
    assert error.startswith(f"rdu-run: error: {mlp_pef}: its tensors take "), error
    assert error.endswith(
        ", batch 16), more than this machine's 1.0 KiB of memory: compile with a smaller -b"
    ), error


STEPS = "must be a whole number from 1 to 16777216 (2**24, the most steps a run counts)"


@pytest.mark.parametrize(
    ("option", "value", "rule"),
    [
        ("--num-steps", HUGE, STEPS),
        ("--num-steps", "16777217", STEPS),
        ("--num-epochs", HUGE, STEPS),
        ("--log-every", HUGE, STEPS),
        ("--ckpt-every", HUGE, "must be a whole number from 0 (only last.pt) to 16777216 (2**24)"),
        ("--world-size", "100000", "must be a whole number from 1 to 64 (ranks started on this"),
        ("--dp-timeout", "1e300", "must be a number of seconds > 0 and <= 1000000"),
    ],
)
def test_huge_counts_are_refused_before_anything_runs(
    tmp_path: Path, mlp_pef: Path, option: str, value: str, rule: str
) -> None:
    ckpt = tmp_path / "ck"
    args = [str(MLP), "--pef", str(mlp_pef), "--ckpt-dir", str(ckpt), option, value]
    error = one_line_error(in_process("rdu-run", *args))
    shown = str(float(value)) if option == "--dp-timeout" else value
    assert error.startswith(f"rdu-run: error: {option} {shown}"), error
    assert rule in error, error
    assert not ckpt.exists()


def test_epochs_beyond_the_step_bound_stop_when_the_epoch_length_is_known(
    tmp_path: Path, mlp_pef: Path
) -> None:
    """200,000 epochs of 89 steps: the epoch length is known when epoch 0 ends (data is drawn
    lazily), and the run stops there, its training kept."""
    ckpt = tmp_path / "ck"
    args = [str(MLP), "--pef", str(mlp_pef), "--ckpt-dir", str(ckpt), "--num-epochs", "200000"]
    assert one_line_error(in_process("rdu-run", *args)) == (
        "rdu-run: error: --num-epochs 200000: 89 steps an epoch make 17800000 steps, more than "
        "the 16777216 (2**24) a run counts; pass --num-steps or fewer epochs; stopped at step "
        f"89; wrote {ckpt / 'last.pt'}"
    )
    assert load_checkpoint(ckpt / "last.pt")["step"] == 89
