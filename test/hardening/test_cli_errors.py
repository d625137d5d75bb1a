"""User errors of rdu-compile and of every rdu-* command line in one line, exit 1.

Every case runs the real command (a process): the exit status, the one stderr line, no
traceback, and nothing written where the compile was refused.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hardening_helpers import MLP, Result, one_line_error, tools, write_model

TARGET = """\
cols = {cols}
rows = {rows}
pcu_lanes = 16
pcu_stages = 6
pmu_bytes = 262144
pmu_banks = 16
clock_ghz = 1.0
link_capacity = 4
dram_gbps = 51.2
stream_bytes_per_cycle = 64
"""

LINEAR = """\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        y = self.fc(x)
{body}


def model(args):
    return {model}


def example_inputs(args):
    return (torch.zeros(args.batch_size, {features}),)


def example_targets(args):
    return (torch.zeros(args.batch_size, 4),)


def loss(out, target):
    return ((out - target) ** 2).mean()
"""
"""A model file whose ``forward`` ends in ``body`` (line 12 on; line 11 calls the Linear);
``model()`` returns ``model``."""


def linear(body: str = "return y", model: str = "Net()", features: int = 4) -> str:
    return LINEAR.format(body=textwrap.indent(body, " " * 8), model=model, features=features)


ENOSPC = """\
import errno
import sys

import compiler.driver


write = compiler.driver.atomic_write_bytes


def full(path, data):
    if str(path).endswith(".pef"):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    write(path, data)


compiler.driver.atomic_write_bytes = full
from tools.rdu_compile import main

sys.argv[0] = "rdu-compile"
main()
"""
"""rdu-compile with a full disk when it writes the PEF."""

# name: (model source, or None for the MLP example; target file or None; arguments; fragments)
CASES: dict[str, tuple[str | None, str | None, list[str], list[str]]] = {
    "target-cols-1e20": (None, TARGET.format(cols=10**20, rows=8), [], [
        "field 'cols' is 100000000000000000000, must be <= 1024",
    ]),
    "target-grid-1000x1000": (None, TARGET.format(cols=1000, rows=1000), [], [
        "'cols' x 'rows' is 1000x1000 = 1000000 slots, must be <= 65536",
    ]),
    "model-returns-int": (linear(model="3"), None, [], [
        "model() must return a torch.nn.Module, got int",
    ]),
    "output-folder-is-a-file": (None, None, ["--output-folder", "{tmp}/a-file"], [
        "--output-folder: {tmp}/a-file is a file, not a folder",
    ]),
    "output-folder-under-a-file": (None, None, ["--output-folder", "{tmp}/a-file/out"], [
        "--output-folder: {tmp}/a-file is a file, not a folder",
    ]),
    "pef-name-a-path": (None, None, ["--pef-name", "a/b"], [
        "--pef-name 'a/b' is not a name",
    ]),
    "data-dependent-if": (
        linear("if y.sum() > 0:\n    return y\nreturn -y"), None, [],
        ["model.py:12: tracing the training step failed: the model decides on a tensor's value",
         "(DataDependentOutputException)"],
    ),
    "data-dependent-item": (
        linear("if y.sum().item() > 0:\n    return y\nreturn -y"), None, ["--inference"],
        ["model.py:12: exporting the model failed: the model decides on a tensor's value"],
    ),
    "wrong-feature-size": (linear(features=5), None, [], [
        "model.py:11: tracing the training step failed: RuntimeError: ",
        "[16, 5] X [4, 4]",
    ]),
    "wrong-feature-size-inference": (linear(features=5), None, ["--inference"], [
        "model.py:11: exporting the model failed: RuntimeError: ",
    ]),
    "disk-full": (None, None, ["ENOSPC"], [
        "cannot write {tmp}/out/mlp/mlp.pef: No space left on device",
    ]),
}  # fmt: skip


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Result]]:
    root = tmp_path_factory.mktemp("cli-errors")
    commands = []
    for name, (source, target, extra, _) in CASES.items():
        tmp = root / name
        tmp.mkdir()
        (tmp / "a-file").write_text("")
        path = MLP if source is None else write_model(tmp / "model", source)
        args = [str(path), "--output-folder", str(tmp / "out")]
        if target is not None:
            (tmp / "target.toml").write_text(target)
            args += ["--arch", str(tmp / "target.toml")]
        args += [a.format(tmp=tmp) for a in extra if a != "ENOSPC"]
        if "ENOSPC" in extra:
            (tmp / "enospc.py").write_text(ENOSPC)
            commands.append(("python", "-P", str(tmp / "enospc.py"), *args))
        else:
            commands.append(("rdu-compile", *args))
    results = tools(*commands)
    return {name: (root / name, r) for name, r in zip(CASES, results, strict=True)}


@pytest.mark.parametrize("case", list(CASES))
def test_compile_error_in_one_line(outcomes: dict[str, tuple[Path, Result]], case: str) -> None:
    tmp, result = outcomes[case]
    error = one_line_error(result)
    assert error.startswith("rdu-compile: error: "), error
    for fragment in CASES[case][3]:
        assert fragment.format(tmp=tmp) in error, error
    source = CASES[case][0]
    if source is not None and "model.py:" not in " ".join(CASES[case][3]):
        assert str(tmp / "model" / "model.py") in error, error
    assert not list(tmp.rglob("*.pef")), list(tmp.rglob("*"))


def test_torch_logs_held_back_until_the_trace_succeeds(tmp_path: Path) -> None:
    """What torch prints while tracing a model that traces is still printed."""
    source = linear('print("from forward", file=__import__("sys").stderr)\nreturn y')
    path = write_model(tmp_path / "model", source)
    (result,) = tools(("rdu-compile", str(path), "--output-folder", str(tmp_path / "out")))
    assert result.returncode == 0, result.stderr
    assert "from forward" in result.stderr


def test_a_wide_grid_gets_its_report_page(tmp_path: Path) -> None:
    """The page draws free slots as one SVG pattern: a 200-slot-wide grid costs what a small one
    does (the PNG pictures it replaced were skipped above 128 slots a side)."""
    (tmp_path / "wide.toml").write_text(TARGET.format(cols=200, rows=8))
    out, arch = tmp_path / "out", str(tmp_path / "wide.toml")
    (result,) = tools(("rdu-compile", str(MLP), "--output-folder", str(out), "--arch", arch))
    assert result.returncode == 0, result.stderr
    assert (out / "mlp" / "mlp.pef").exists()
    assert (out / "mlp" / "report.json").exists()
    page = (out / "mlp" / "report.html").read_text()
    assert 'viewBox="-1 -0.3 201.3 8.6"' in page and page.count("<pattern") == 3


USAGE: dict[str, tuple[list[str], str]] = {
    # name: (command line, "{mlp}" the MLP example, "{pef}" its PEF; the whole error line)
    "compile-close-option": (
        ["rdu-compile", "{mlp}", "--outputfolder", "x"],
        "rdu-compile: error: no such option: --outputfolder (did you mean --output-folder?)",
    ),
    "compile-model-option": (
        ["rdu-compile", "{mlp}", "--check", "--hiden", "3"],
        "rdu-compile: error: no such option: --hiden (did you mean --hidden or --help?)",
    ),
    "compile-bad-int": (
        ["rdu-compile", "{mlp}", "-b", "x"],
        "rdu-compile: error: invalid value for '-b' / '--batch-size': 'x' is not a valid "
        "integer (see --help)",
    ),
    "compile-missing-value": (
        ["rdu-compile", "{mlp}", "--output-folder"],
        "rdu-compile: error: option '--output-folder' requires an argument (see --help)",
    ),
    "run-close-option": (
        ["rdu-run", "{mlp}", "--pef", "{pef}", "--lrr", "0.1"],
        "rdu-run: error: no such option: --lrr (did you mean --lr?)",
    ),
    "run-bad-float": (
        ["rdu-run", "{mlp}", "--pef", "{pef}", "--lr", "x"],
        "rdu-run: error: invalid value for '--lr': 'x' is not a valid float (see --help)",
    ),
    "run-negative-lr": (
        ["rdu-run", "{mlp}", "--pef", "{pef}", "--lr", "-1"],
        "rdu-run: error: --lr -1.0: lr must be a finite number >= 0",
    ),
    "run-log-every-0": (
        ["rdu-run", "{mlp}", "--pef", "{pef}", "--log-every", "0"],
        "rdu-run: error: --log-every 0: must be a whole number from 1 to 16777216 (2**24, the most "
        "steps a run counts)",
    ),
    "run-negative-seed": (
        ["rdu-run", "{mlp}", "--pef", "{pef}", "--seed", "-1"],
        "rdu-run: error: --seed -1: must be a whole number >= 0",
    ),
    "compile-huge-seed": (
        ["rdu-compile", "{mlp}", "--seed", "18446744073709551616"],
        "rdu-compile: error: invalid value for '--seed': 18446744073709551616 is not in the range "
        "-9223372036854775808<=x<=18446744073709551615 (see --help)",
    ),
    "test-bad-float": (
        ["rdu-test", "{mlp}", "--pef", "{pef}", "--rtol", "x"],
        "rdu-test: error: invalid value for '--rtol': 'x' is not a valid float (see --help)",
    ),
    "pef-unknown-option": (
        ["rdu-pef", "--bogus"],
        "rdu-pef: error: no such option: --bogus (see --help)",
    ),
    "pef-missing-argument": (["rdu-pef"], "rdu-pef: error: missing argument 'PEF' (see --help)"),
}


@pytest.fixture(scope="module")
def usage_outcomes(mlp_pef: Path) -> dict[str, Result]:
    commands = [tuple(a.format(mlp=MLP, pef=mlp_pef) for a in line) for line, _ in USAGE.values()]
    return dict(zip(USAGE, tools(*commands), strict=True))


@pytest.mark.parametrize("case", list(USAGE))
def test_usage_error_in_one_line(usage_outcomes: dict[str, Result], case: str) -> None:
    """Not click's usage, hint and error (exit 2): one line, exit 1, as the README says."""
    assert one_line_error(usage_outcomes[case]) == USAGE[case][1]
    assert usage_outcomes[case].stdout == ""
