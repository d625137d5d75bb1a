"""The "silently wrong" class, model side: a PEF, a checkpoint, a target or an example batch that
does not fit what it runs with is refused in one line (exit 1, no traceback) instead of running.

- a stale PEF (model.py edited after compiling; another module structure), ``--allow-source-change``
- a checkpoint of another model (an unexpected tensor), without or with another optimizer's
  state, ``--reset-optimizer``
- ``--arch PRESET`` for a PEF compiled from a target file of the same name
- a crafted training PEF without its optimizer section
- a 0-row example batch, a vector loss, ``optimizer()`` returning None (at compile time)
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import torch
from hardening_helpers import MLP, compile_model, one_line_error, tool, tools, write_model

from runtime.pef import read_pef, write_pef

SOURCE = MLP.read_text()
TANH = SOURCE.replace("nn.ReLU()", "nn.Tanh()")
EXTRA_PARAMETER = SOURCE.replace(
    "self.fc2 = nn.Linear(hidden, classes)",
    "self.fc2 = nn.Linear(hidden, classes)\n        self.scale = nn.Parameter(torch.ones(1))",
)
assert TANH != SOURCE and EXTRA_PARAMETER != SOURCE


def _run(model: Path, pef: Path, *extra: str) -> tuple[str, ...]:
    return ("rdu-run", str(model), "--pef", str(pef), "--test", *extra)


@pytest.fixture(scope="module")
def stale(tmp_path_factory: pytest.TempPathFactory, mlp_pef: Path) -> dict:
    root = tmp_path_factory.mktemp("stale")
    tanh = write_model(root / "tanh", TANH)
    extra = write_model(root / "extra", EXTRA_PARAMETER)
    program = read_pef(mlp_pef)
    in_memory = root / "in-memory.pef"  # as compile_model() in Python writes it: no source hash
    write_pef(in_memory, msgspec.structs.replace(program, meta=msgspec.structs.replace(
        program.meta, source_hash="")))  # fmt: skip
    names = ["edited", "edited-rdu-test", "allowed", "in-memory", "wider", "extra-parameter"]
    commands = [
        _run(tanh, mlp_pef),
        ("rdu-test", str(tanh), "--pef", str(mlp_pef)),
        _run(tanh, mlp_pef, "--allow-source-change"),
        _run(tanh, in_memory),
        _run(MLP, mlp_pef, "--hidden", "32"),
        _run(extra, mlp_pef, "--allow-source-change"),
    ]
    return dict(zip(names, tools(*commands), strict=True))


@pytest.mark.parametrize("case", ["edited", "edited-rdu-test"])
def test_a_pef_of_an_edited_model_is_refused(stale: dict, case: str, mlp_pef: Path) -> None:
    error = one_line_error(stale[case])
    assert f"{mlp_pef} was compiled from another version of " in error, error
    assert "tanh/model.py (its sha256 differs)" in error and "--allow-source-change" in error
    assert "test run passed" not in stale[case].stdout


def test_allow_source_change_runs_it(stale: dict) -> None:
    assert stale["allowed"].returncode == 0, stale["allowed"].stderr
    assert "test run passed" in stale["allowed"].stdout


def test_a_pef_compiled_in_memory_has_no_source_to_check(stale: dict) -> None:
    assert stale["in-memory"].returncode == 0, stale["in-memory"].stderr


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("wider", "'fc1.weight' is a parameter [32, 64] f32 in the model, a parameter "
                  "[128, 64] f32 in the PEF; recompile it"),
        ("extra-parameter", "the model has parameter 'scale' [1] f32, the PEF has none"),
    ],
)  # fmt: skip
def test_another_structure_is_refused_even_when_allowed(
    stale: dict, case: str, fragment: str, mlp_pef: Path
) -> None:
    error = one_line_error(stale[case])
    assert f"{mlp_pef} does not fit the model of " in error and fragment in error, error


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory, mlp_pef: Path) -> dict:
    root = tmp_path_factory.mktemp("ckpt-fit")
    trained = tool("rdu-run", str(MLP), "--pef", str(mlp_pef), "--num-steps", "2",
                   "--ckpt-dir", str(root / "ck"))  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    good = torch.load(root / "ck" / "last.pt", weights_only=True)
    assert good["step"] == 2 and good["optimizer"]["state"]
    adamw = torch.optim.AdamW([torch.zeros(1, requires_grad=True)]).state_dict()["param_groups"]
    cases = {
        "extra-key": {**good, "model": {**good["model"], "head.weight": torch.zeros(2, 2)}},
        "bare": good["model"],
        "adamw": {**good, "optimizer": {"state": {}, "param_groups": [
            {**adamw[0], "params": [0, 1, 2, 3]}]}},
        "no-momentum": {**good, "optimizer": {**good["optimizer"], "state": {}}},
    }  # fmt: skip
    paths = {}
    for name, payload in cases.items():
        paths[name] = root / f"{name}.pt"
        torch.save(payload, paths[name])
    names = [*cases, "reset"]
    commands = [_run(MLP, mlp_pef, "--init-ckpt-path", str(paths[n])) for n in cases]
    commands.append(_run(MLP, mlp_pef, "--init-ckpt-path", str(paths["adamw"]),
                         "--reset-optimizer"))  # fmt: skip
    return {"results": dict(zip(names, tools(*commands), strict=True)), "paths": paths}


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("extra-key", "model: unexpected tensor 'head.weight': not in the model or the PEF"),
        ("bare", "has no optimizer state for the PEF's SGD; pass --reset-optimizer"),
        ("adamw", "holds Adam/AdamW optimizer state, the PEF's optimizer is SGD; "
                  "pass --reset-optimizer"),
        ("no-momentum", "optimizer state lacks 'fc1.weight.momentum_buffer' after step 2; "
                        "pass --reset-optimizer"),
    ],
)  # fmt: skip
def test_a_checkpoint_that_does_not_fit_is_refused(
    checkpoints: dict, case: str, fragment: str
) -> None:
    error = one_line_error(checkpoints["results"][case])
    assert error.startswith(f"rdu-run: error: {checkpoints['paths'][case]}: "), error
    assert fragment in error, error


def test_reset_optimizer_starts_it_at_zero_and_says_so(checkpoints: dict) -> None:
    result = checkpoints["results"]["reset"]
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == (
        "note: --reset-optimizer: the sgd optimizer state starts at zero at step 2"
    )
    assert "test run passed" in result.stdout


TARGET = """\
cols = 8
rows = 8
pcu_lanes = 16
pcu_stages = 6
pmu_bytes = 262144
pmu_banks = 16
clock_ghz = 1.0
link_capacity = 4
dram_gbps = 51.2
stream_bytes_per_cycle = 64
"""


def test_a_target_file_named_like_a_preset_is_not_the_preset(tmp_path: Path) -> None:
    custom = tmp_path / "sn10.toml"
    custom.write_text(TARGET)
    pef = compile_model(MLP, tmp_path / "out", "--inference", "--arch", str(custom))
    assert read_pef(pef).meta.target.name == "sn10"
    refused, accepted = tools(
        ("rdu-run", str(MLP), "--pef", str(pef), "--inference", "--results-dir",
         str(tmp_path / "r1"), "--arch", "sn10"),
        ("rdu-run", str(MLP), "--pef", str(pef), "--inference", "--results-dir",
         str(tmp_path / "r2"), "--arch", str(custom)),
    )  # fmt: skip
    error = one_line_error(refused)
    assert (
        f"{pef} was compiled for target 'sn10', not the preset 'sn10' (cols 8 in the PEF, "
        "40 in the preset): recompile it with rdu-compile --arch sn10" in error
    ), error
    assert accepted.returncode == 0, accepted.stderr


def _without(program, kind: str):  # noqa: ANN001, ANN202
    return msgspec.structs.replace(
        program, sections=[s for s in program.sections if s.kind != kind]
    )


def test_a_training_pef_without_its_optimizer_is_refused(tmp_path: Path, mlp_pef: Path) -> None:
    crafted = tmp_path / "no-optimizer.pef"
    # Valid checksums: written by the container itself, the validator not run on the way out.
    from runtime.pef.container import encode_pef

    crafted.write_bytes(encode_pef(_without(read_pef(mlp_pef), "optimizer"), check=False))
    run, shown = tools(_run(MLP, crafted), ("rdu-pef", str(crafted)))
    for result in (run, shown):
        error = one_line_error(result)
        assert error.endswith(
            "sections: a training PEF (meta.inference false, optimizer 'sgd') with gradients "
            "('fc1.weight.grad') has no optimizer section: its parameters would never change"
        ), error


FROZEN = """\
import torch
from torch import nn


def model(args):
    m = nn.Linear(4, 3)
    m.requires_grad_(False)
    return m


def example_inputs(args):
    return (torch.randn(args.batch_size, 4),)


def example_targets(args):
    return (torch.randint(0, 3, (args.batch_size,)),)


def loss(out, y):
    return nn.functional.cross_entropy(out, y)


def data(split, args):
    yield example_inputs(args), example_targets(args)
"""


def test_a_model_without_trainable_parameters_needs_no_optimizer(tmp_path: Path) -> None:
    model = write_model(tmp_path / "frozen", FROZEN)
    pef = compile_model(model, tmp_path / "out", "-b", "4")
    assert [s.kind for s in read_pef(pef).sections] == ["forward", "backward"]
    result = tool(*_run(model, pef))
    assert result.returncode == 0, result.stderr


COMPILE_ERRORS = {
    "zero-rows": (
        FROZEN.replace("torch.randn(args.batch_size, 4)", "torch.randn(0, 4)"),
        "example_inputs() item 0 has 0 rows (shape [0, 4]); a batch needs at least one",
    ),
    "vector-loss": (
        FROZEN.replace("    m.requires_grad_(False)\n", "").replace(
            "cross_entropy(out, y)", "cross_entropy(out, y, reduction='none')"
        ),
        "loss() returned a tensor of shape [4], not a 0-d loss tensor (reduce it, e.g. with "
        ".mean())",
    ),
    "optimizer-none": (
        FROZEN.replace("    m.requires_grad_(False)\n", "")
        + "\n\ndef optimizer(params, args):\n    torch.optim.SGD(params, lr=0.1)\n",
        "optimizer() returned None, not a torch.optim.Optimizer",
    ),
}


def test_compile_errors_name_model_py_and_the_function(tmp_path: Path) -> None:
    commands = []
    for name, (source, _) in COMPILE_ERRORS.items():
        model = write_model(tmp_path / name, source)
        commands.append(("rdu-compile", str(model), "-b", "4", "--output-folder",
                         str(tmp_path / "out")))  # fmt: skip
    commands.append(("rdu-compile", str(MLP), "-b", "0", "--output-folder", str(tmp_path)))
    results = tools(*commands)
    for (name, (_, fragment)), result in zip(COMPILE_ERRORS.items(), results, strict=False):
        error = one_line_error(result)
        assert error.startswith(f"rdu-compile: error: {tmp_path / name / 'model.py'}: "), error
        assert fragment in error, (name, error)
    assert not list(tmp_path.rglob("*.pef"))
    error = one_line_error(results[-1])
    assert error == "rdu-compile: error: --batch-size must be positive, got 0", error
