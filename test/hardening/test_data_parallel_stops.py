"""A data-parallel job stops as one: whatever stops one rank at a step stops every rank at that
step, promptly (not at ``--dp-timeout``), in one line, with rank 0's ``last.pt`` of the last
finite state written once. The ranks' mean loss rides in the gradient all-reduce, every rank
checks the whole global batch, and rank 0 tells the others whether it wrote a checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hardening_helpers import MLP, compile_model, one_line_error, tool, write_model
from test_run_stops import WRAPPED, assert_same_weights

DATA = {
    # row 15 of the global batch of 16: the last row of rank 1's shard
    "nan-on-rank-1": """\
    for i, ((x,), (y,)) in enumerate(batches):
        if split == "train" and i == 3:
            x = x.clone(); x[15, 5] = float("nan")
        yield (x,), (y,)""",
    "label-on-rank-1": """\
    for i, ((x,), (y,)) in enumerate(batches):
        if split == "train" and i == 2:
            y = y.clone(); y[12] = 10
        yield (x,), (y,)""",
}


@pytest.fixture(scope="module")
def dp_pef(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MLP for data-parallel training, batch 8 a rank."""
    out = tmp_path_factory.mktemp("dp-stops")
    return compile_model(MLP, out, "-b", "8", "--data-parallel", "--pef-name", "dp8")


def run_two_ranks(model: Path, pef: Path, ckpt: Path, *extra: str):
    """2 ranks launched by rdu-run; a --dp-timeout far longer than the test takes."""
    return tool(
        "rdu-run", str(model), "--pef", str(pef), "--world-size", "2", "--ckpt-dir", str(ckpt),
        "--allow-source-change", "--dp-timeout", "600", "--num-steps", "10", *extra,
    )  # fmt: skip


def model_with(tmp: Path, case: str) -> Path:
    return write_model(tmp / case, WRAPPED.format(mlp=str(MLP), body=DATA[case]))


def test_a_nan_on_one_ranks_shard_stops_every_rank_at_that_step(
    tmp_path: Path, dp_pef: Path
) -> None:
    model = model_with(tmp_path, "nan-on-rank-1")
    result = run_two_ranks(model, dp_pef, tmp_path / "ck", "--ckpt-every", "3")
    last = tmp_path / "ck" / "last.pt"
    assert one_line_error(result) == (
        "rdu-run: error: step 4 (batch 3 of epoch 0): the loss is nan: input 'input.0' holds "
        "1 NaN of 1024 values (first in row 15, rank 1's shard); stopped at step 4; "
        f"wrote {last} (step 3, the last finite state)"
    )
    # the state before the NaN step: the step-3 checkpoint, bit for bit, all finite
    assert_same_weights(last, tmp_path / "ck" / "step-3.pt")
    state = torch.load(last, weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_a_label_out_of_range_on_one_ranks_shard_stops_every_rank(
    tmp_path: Path, dp_pef: Path
) -> None:
    """Every rank checks the whole global batch (labels, dtypes, rows), so all stop together."""
    result = run_two_ranks(model_with(tmp_path, "label-on-rank-1"), dp_pef, tmp_path / "ck")
    last = tmp_path / "ck" / "last.pt"
    assert one_line_error(result) == (
        "rdu-run: error: step 3 (batch 2 of epoch 0): label 'target.0' row 12, rank 1's shard "
        "is 10, outside the 10 classes [0, 10) of output.0 (torch's cross_entropy raises); "
        f"stopped at step 2; wrote {last}"
    )
    assert torch.load(last, weights_only=True)["step"] == 2


def test_a_checkpoint_rank_0_cannot_write_stops_every_rank(tmp_path: Path, dp_pef: Path) -> None:
    """step-2.pt cannot be written (a folder of that name is in the way): rank 0 says so, the
    other rank stops at the same step instead of waiting for it in the next all-reduce."""
    ckpt = tmp_path / "ck"
    (ckpt / "step-2.pt").mkdir(parents=True)
    result = run_two_ranks(MLP, dp_pef, ckpt, "--ckpt-every", "2")
    error = one_line_error(result)
    assert error.startswith(f"rdu-run: error: {ckpt / 'step-2.pt'}: cannot write the checkpoint: ")
    assert error.endswith(f"; stopped at step 2; wrote {ckpt / 'last.pt'}"), error
    assert torch.load(ckpt / "last.pt", weights_only=True)["step"] == 2
