"""rdu-compile on a bad model file or a model the target cannot hold: one line, exit 1.

(An unsupported op naming the op and the model's line is pinned by test/e2e/test_mlp.py.)
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hardening_helpers import MLP, in_process, one_line_error, tools, write_model

from compiler.targets import PRESETS

LINEAR = """\
import torch
from torch import nn


def model(args):
    return nn.Linear(4, 4)


def example_inputs(args):
    return {inputs}
"""

CASES: dict[str, tuple[str | None, list[str], list[str]]] = {
    # name: (model.py source or None for no file, extra arguments, expected fragments)
    "missing": (None, [], ["no such model file"]),
    "not-python-name": ("", ["NAME=model.txt"], ["model.txt: not a Python file"]),
    "syntax-error": ("def model(args):\n    return (\n", [], ["model.py:", "not valid Python"]),
    "raises-on-import": (
        "import torch\n\nraise RuntimeError('no GPU here')\n",
        [],
        ["model.py:3: importing raised RuntimeError: no GPU here"],
    ),
    "no-model": ("import torch\n\n\ndef data(split, args):\n    return []\n", [], [
        "defines no function 'model'"
    ]),
    "numpy-inputs": (
        "import numpy as np\n" + LINEAR.format(inputs="(np.zeros((args.batch_size, 4)),)"),
        ["--inference"],
        ["example_inputs() item 0 is a ndarray, not a torch tensor"],
    ),
    "bare-tensor": (
        LINEAR.format(inputs="torch.zeros(args.batch_size, 4)"),
        ["--inference"],
        ["example_inputs() returned a bare tensor"],
    ),
    "not-a-tuple": (
        LINEAR.format(inputs="'zeros'"),
        ["--inference"],
        ["example_inputs() returned a str, not a tuple of tensors"],
    ),
    "bad-arch": (LINEAR.format(inputs="(torch.zeros(args.batch_size, 4),)"), ["--arch", "nope"], [
        "unknown target 'nope' (choose from"
    ]),
    "parameter-over-dram": (
        textwrap.dedent(
            """\
            import torch
            from torch import nn


            def model(args):
                return nn.Sequential(nn.Linear(4096, 4352))


            def example_inputs(args):
                return (torch.zeros(args.batch_size, 4096),)
            """
        ),
        ["--inference", "--arch", "tiny", "-b", "1"],
        ["tensor '0.weight' [4352, 4096] float32 is 71303168 bytes (68.0 MiB), more than the "
         "64.0 MiB of off-chip memory of target 'tiny'"],
    ),
    "activation-over-dram": (
        textwrap.dedent(
            """\
            import torch
            from torch import nn


            class Outer(nn.Module):
                def forward(self, x):
                    return x.unsqueeze(2) * x.unsqueeze(1)


            def model(args):
                return Outer()


            def example_inputs(args):
                return (torch.ones(args.batch_size, 4200),)
            """
        ),
        ["--inference", "--arch", "tiny", "-b", "1"],
        ["tensor 'output.0' [1, 4200, 4200] f32 is 70560000 bytes", "of target 'tiny'"],
    ),
}  # fmt: skip


SUBPROCESS = ("missing", "parameter-over-dram", "activation-over-dram")
"""Cases run as real processes (the exit status and stderr as a shell sees them; and the two
that reach the compiler, which tunes the garbage collector for the rest of its process). The
others run in this process: the same command, without the imports each time."""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    root = tmp_path_factory.mktemp("compile-errors")
    commands, paths = [], []
    for name, (source, extra, _) in CASES.items():
        folder = root / name
        file_name = next((e.split("=", 1)[1] for e in extra if e.startswith("NAME=")), None)
        extra = [e for e in extra if not e.startswith("NAME=")]
        if source is None:
            path = folder / "model.py"
        else:
            path = write_model(folder, source)
            if file_name:
                path = path.rename(folder / file_name)
        paths.append(path)
        commands.append(("rdu-compile", str(path), "--output-folder", str(root / "out"), *extra))
    slow = tools(*(c for name, c in zip(CASES, commands, strict=True) if name in SUBPROCESS))
    results = {name: result for name, result in zip(SUBPROCESS, slow, strict=True)}
    for name, command in zip(CASES, commands, strict=True):
        if name not in SUBPROCESS:
            results[name] = in_process(*command)
    return {name: (path, results[name]) for name, path in zip(CASES, paths, strict=True)}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_in_one_line(outcomes: dict, case: str) -> None:
    path, result = outcomes[case]
    error = one_line_error(result)
    assert error.startswith("rdu-compile: error: "), error
    for fragment in CASES[case][2]:
        assert fragment in error, error
    if case not in ("bad-arch",):
        assert str(path.parent) in error  # names the model file
    assert not (path.parent.parent / "out").exists() or not list(
        (path.parent.parent / "out").rglob("*.pef")
    )


def test_every_preset_has_an_off_chip_capacity() -> None:
    for target in PRESETS.values():
        assert target.dram_bytes >= 64 * 2**20, target.name
    assert PRESETS["sn10"].dram_bytes == 1536 * 2**30


def test_the_example_fits() -> None:
    """The check does not refuse what fits: the MLP's largest tensor against the tiny target."""
    from compiler.capacity import check_model_fits
    from tools.model_file import load_model_file

    model_file = load_model_file(MLP)
    args = type("Args", (), {"hidden": 128, "classes": 10, "batch_size": 16})()
    check_model_fits(PRESETS["tiny"], MLP, model_file.call("model", args), [])
