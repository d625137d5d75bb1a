"""``metrics.csv`` beside the checkpoints (``tools/metrics_log.py``): a row a logged step, the
same loss and accuracy as the printed lines, samples/s emulated and modelled; a resumed run
appends, dropping the rows of steps it redoes; a row cut short is dropped; a file that is not
ours is refused in one line."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from e2e_helpers import MLP, in_process

from runtime.machine.perf import program_models
from runtime.pef import read_pef
from tools.cli import ToolError
from tools.metrics_log import HEADER, MetricsLog, MetricsRow


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _train(mlp_pef: Path, ckpt: Path, *extra: str) -> str:
    result = in_process("rdu-run", str(MLP), "--pef", str(mlp_pef), "--ckpt-dir", str(ckpt),
                        "--log-every", "10", *extra)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_run_and_its_resume_write_one_history(mlp_pef: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    printed = _train(mlp_pef, ckpt, "--num-steps", "40", "--ckpt-every", "20")
    path = ckpt / "metrics.csv"
    assert path.read_text().splitlines()[0] == HEADER
    rows = _rows(path)
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40]
    program = read_pef(mlp_pef)
    step_seconds = sum(m.seconds for m in program_models(program))  # co-resident: rules 7 and 8
    for row in rows:  # the printed line's figures
        assert f"step {row['step']} epoch {row['epoch']} loss {float(row['loss']):.4f} acc " \
               f"{float(row['accuracy']):.3f}" in printed  # fmt: skip
        assert float(row["samples_per_s_emulated"]) > 0
        modelled = float(row["samples_per_s_modelled"])
        assert modelled == pytest.approx(program.meta.batch_size / step_seconds, rel=1e-6)

    # resuming from step 20 redoes steps 21..30: rows 30 and 40 of the first run go
    _train(mlp_pef, ckpt, "--num-steps", "30", "--init-ckpt-path", str(ckpt / "step-20.pt"))
    resumed = _rows(path)
    assert [int(r["step"]) for r in resumed] == [10, 20, 30]
    assert resumed[:2] == rows[:2]
    assert float(resumed[2]["loss"]) == pytest.approx(float(rows[2]["loss"]), rel=1e-6)


def test_a_row_cut_short_is_dropped_and_rows_append(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text(f"{HEADER}\n10,0,2.1,0.5,100.0,2000.0\n20,0,1.")  # killed mid-row
    log = MetricsLog(path, start=20)
    log.append(MetricsRow(30, 0, 1.5, None, 120.0, math.inf))
    assert path.read_text() == f"{HEADER}\n10,0,2.1,0.5,100.0,2000.0\n30,0,1.500000,,120.0,inf\n"


def test_a_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,loss\n1,2\n")
    with pytest.raises(ToolError, match=r"is not a metrics file of rdu-run"):
        MetricsLog(path, start=0)
    assert path.read_text() == "epoch,loss\n1,2\n"  # left as it was
