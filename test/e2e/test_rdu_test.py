"""rdu-test tells the truth: torch's reference draws the fabric's dropout masks bit for bit, the
tolerance rule passes rounding noise and fails a 1e-4 error, each section is judged on torch's
values of its inputs, and the report is worst first with a verdict per section (or JSON)."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from e2e_helpers import MLP, in_process, rdu_test, tool

import runtime.fabric as fabric_module
from runtime.dtypes import bf16
from runtime.pef import read_pef
from runtime.session import TrainingSession, rng_seed_value
from tools.fabric_random import Draw, FabricRandomMode, dropout_keep, stream_key, uniform
from tools.rdu_run import Run
from tools.rdu_test import END_TO_END, _tolerance_text, check_against_torch
from tools.reference import (
    joint_values,
    load_weights,
    round_legitimately,
    run_joint,
    trace_joint,
)
from tools.tolerance import (
    DEFAULT_TOLERANCES,
    TorchError,
    cancelled,
    compare,
    float_error,
    scale_of,
)

TWO_DROPOUTS = textwrap.dedent(
    '''
    """Two dropout layers of one shape (so only the order of the streams tells them apart)."""
    import torch
    from torch import nn
    from torch.nn import functional as F


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(
                nn.Linear(8, 16), nn.Dropout(0.25), nn.ReLU(),
                nn.Linear(16, 16), nn.Dropout(0.5), nn.Tanh(), nn.Linear(16, 3),
            )

        def forward(self, x):
            return self.layers(x)


    def model(args):
        return Net()


    def example_inputs(args):
        return (torch.zeros(args.batch_size, 8),)


    def example_targets(args):
        return (torch.zeros(args.batch_size, dtype=torch.int64),)


    def loss(out, y):
        return F.cross_entropy(out, y)


    def optimizer(params, args):
        return torch.optim.AdamW(params, lr=1e-2)


    def data(split, args):
        g = torch.Generator().manual_seed(args.seed)
        for _ in range(2):
            x = torch.randn(args.batch_size, 8, generator=g)
            yield (x,), (torch.randint(0, 3, (args.batch_size,), generator=g),)
    '''
)
SEED = 3

NOISE_IN_EVAL = TWO_DROPOUTS.replace(
    "Two dropout layers of one shape (so only the order of the streams tells them apart).",
    "Noise drawn in eval mode too (ViTMAE masks patches by random noise at inference).",
).replace(
    "return self.layers(x)",
    "return self.layers(x + torch.rand(x.shape) * 0.5 - torch.rand_like(x))",
)

FLOOR_WITHOUT_A_DTYPE = textwrap.dedent(
    '''
    """Masks with its dtype's lowest number in a tensor made without a dtype (as Hugging Face's
    XGLM does): the default dtype's, not float64's, unless run with float64 the default."""
    import torch
    from torch import nn
    from torch.nn import functional as F


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            y = self.fc(x)
            floor = torch.full((), torch.finfo(y.dtype).min)
            return F.softmax(y.masked_fill(x > 0.5, floor), dim=-1)


    def model(args):
        return Net()


    def example_inputs(args):
        return (torch.zeros(args.batch_size, 8),)


    def example_targets(args):
        return (torch.zeros(args.batch_size, dtype=torch.int64),)


    def loss(out, y):
        return F.nll_loss(out, y)


    def data(split, args):
        g = torch.Generator().manual_seed(args.seed)
        for _ in range(2):
            x = torch.randn(args.batch_size, 8, generator=g)
            yield (x,), (torch.randint(0, 8, (args.batch_size,), generator=g),)
    '''
)


def _run(model: Path, pef: Path, seed: int = 0) -> Run:
    opts = {"seed": seed, "init_ckpt_path": None, "lr": None, "momentum": None}
    return Run(str(model), [], debug=True, pef_path=str(pef), weight_decay=None, **opts)


@pytest.fixture(scope="module")
def dropout_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("dropout")
    model = folder / "model.py"
    model.write_text(TWO_DROPOUTS)
    out = str(folder / "out")
    result = tool("rdu-compile", str(model), "-b", "16", "--output-folder", out, "--pef-name", "d")
    assert result.returncode == 0, result.stderr
    return model, folder / "out" / "d" / "d.pef"


def test_the_generator_is_the_fabrics() -> None:
    """tools/fabric_random.py transcribes the ISA's ``rand``; it gives the emulator's numbers."""
    key = stream_key(rng_seed_value(12345, 7), 3)
    index = np.arange(6 * 5, dtype=np.uint64).reshape(6, 5)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps, as the fabric runs it
        fabric = fabric_module._rand(index, np.asarray(key, dtype=np.int64))
    np.testing.assert_array_equal(uniform(key, (6, 5)), fabric)


def test_a_layer_the_forward_builds_draws_its_init_from_torch_not_the_fabric() -> None:
    """BigBird's first forward on a short sequence makes new ``Linear`` layers (their
    ``kaiming_uniform_`` fills parameters in place): torch's generator fills them, and the
    fabric's first stream still goes to the dropout after them."""
    key = stream_key(rng_seed_value(0, 0), 0)
    mode = FabricRandomMode(
        [Draw("dropout", torch.ops.aten.native_dropout.default, (2, 4), 0.5, key)]
    )
    x = torch.ones(2, 4)
    with mode:
        layer = torch.nn.Linear(4, 4)
        dropped = torch.nn.functional.dropout(x, 0.5, training=True)
    mode.check_done()
    assert layer.weight.abs().sum() > 0
    np.testing.assert_array_equal(dropped.numpy() != 0, dropout_keep(key, (2, 4), 0.5).numpy())


def test_an_inference_pef_that_draws_is_checked_on_the_fabrics_numbers(tmp_path: Path) -> None:
    """An inference PEF reading ``rng_seed`` (a model drawing in eval mode): torch's reference
    draws the fabric's numbers, stream by stream (its own would fail the comparison)."""
    model = tmp_path / "model.py"
    model.write_text(NOISE_IN_EVAL)
    out = str(tmp_path / "out")
    args = ("-b", "4", "--output-folder", out, "--pef-name", "n", "--inference")
    compiled = in_process("rdu-compile", str(model), *args)
    assert compiled.returncode == 0, compiled.stderr
    checked = in_process("rdu-test", str(model), "--pef", str(tmp_path / "out" / "n" / "n.pef"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "rdu-test: PASS" in checked.stdout
    # torch's float64 run drew the same numbers: its distance to the float32 run (the
    # tolerance's "torch's own" error) is rounding, not two draws apart
    own = [float(e) for e in re.findall(r"torch's own ([-+.e\d]+)\)", checked.stdout)]
    assert own and max(own) < 1e-5, checked.stdout


def test_two_dropouts_draw_the_fabrics_masks_bit_for_bit(dropout_model: tuple[Path, Path]) -> None:
    model_path, pef = dropout_model
    run = _run(model_path, pef, SEED)
    state, step = run.initial_state()
    inputs, targets = next(iter(run.batches("train", 0)))
    feed = run.batch(inputs, targets)
    joint = trace_joint(run)
    assert [joint.streams[n] for n in joint.random_nodes] == [0, 1]

    session = TrainingSession(read_pef(pef), state)
    session.seed = SEED
    session.keep_activations = True  # the saved masks, read below
    result = session.step(feed, run.hyperparameters())
    rng_seed = rng_seed_value(SEED, step)
    assert int(session.last_dram["rng_seed"]) == rng_seed

    # The masks the forward saves for the backward: node by node, as the graph is run in torch.
    masks = [
        f"saved.{user.name}" for n in joint.random_nodes for user in n.users if user.args[1] == 1
    ]
    assert len(masks) == 2
    from_graph, _ = joint_values(joint, run.program, {**state, **feed}, rng_seed)
    fabric = [session.last_dram[m] for m in masks]
    for name, mask in zip(masks, fabric, strict=True):
        assert mask.dtype == np.bool_
        np.testing.assert_array_equal(mask, from_graph[name])
    assert abs(fabric[0].mean() - 0.75) < 0.1 and abs(fabric[1].mean() - 0.5) < 0.1

    # Eager torch draws them in order, and its backward multiplies by the same masks.
    model = run.torch_model()
    load_weights(model, state)
    mode = FabricRandomMode(joint.draws(rng_seed))
    with mode:
        loss = run.model_file.function("loss")(model(*inputs), *targets)
        loss.backward()
    mode.check_done()
    for drawn, mask in zip(mode.masks, fabric, strict=True):
        np.testing.assert_array_equal(drawn.numpy(), mask)
    grads = {f"{n}.grad": p.grad.numpy() for n, p in model.named_parameters()}
    for name, want in grads.items():  # the first layer's gradient passes through both masks
        scale, _ = scale_of("gradient", name, grads, {})
        assert compare(name, result.gradients[name], want, scale=scale).ok, name
    assert np.isclose(result.loss, loss.item(), rtol=1e-6)


def test_the_reference_reads_the_state_in_place(mlp_pef: Path) -> None:
    """At 0.5B parameters a copy of the state per run (and a float64 one living through the
    float64 run) did not fit: the runs read the caller's arrays, widening where they are read,
    and write none of them."""
    run = _run(MLP, mlp_pef)
    state, step = run.initial_state()
    inputs, targets = next(iter(run.batches("train", 0)))
    feed = {**state, **run.batch(inputs, targets)}
    before = {k: np.array(v) for k, v in feed.items()}
    joint = trace_joint(run)
    assert not joint.mutates
    rng_seed = rng_seed_value(0, step)
    for wide in (False, True):
        env = run_joint(joint, feed, rng_seed, wide=wide)
        by_name = {gi.node: gi.name for gi in joint.traced.inputs}
        placeholders = [n for n in env if n in by_name and by_name[n] in state]
        assert placeholders
        for node in placeholders:
            assert np.shares_memory(env[node].numpy(), feed[by_name[node]]), node
        results = [v for n, v in env.items() if n.op == "call_function" and hasattr(v, "dtype")]
        floats = {v.dtype for v in results if v.is_floating_point()}
        assert floats == ({torch.float64} if wide else {torch.float32})
    for name, value in before.items():
        np.testing.assert_array_equal(feed[name], value, err_msg=name)


def test_a_bias_gradient_is_scaled_by_its_terms_when_it_cancels(mlp_pef: Path) -> None:
    """A bias's gradient sums its output's over the batch: the reference gives the largest sum
    of those terms' magnitudes (fc2's: sum over the batch of |d loss / d logits|); a gradient
    torch computes below float32's resolution of them is judged at that size, not below it."""
    run = _run(MLP, mlp_pef)
    state, step = run.initial_state()
    inputs, targets = next(iter(run.batches("train", 0)))
    feed = {**state, **run.batch(inputs, targets)}
    _, scales = joint_values(trace_joint(run), run.program, feed, rng_seed_value(0, step))
    model = run.torch_model()
    load_weights(model, state)
    logits = model(*inputs)
    logits.retain_grad()
    run.model_file.function("loss")(logits, *targets).backward()
    terms = float(logits.grad.abs().sum(0).max())
    assert scales["fc2.bias.grad"] == pytest.approx(terms, rel=1e-6)
    assert "fc2.weight.grad" not in scales  # an outer product, not a sum of one gradient
    f32 = DEFAULT_TOLERANCES["float32"]
    noise = np.full(4, terms * 1e-7, np.float32)  # a sum cancelled to rounding noise
    assert cancelled(np.zeros(4, np.float32), terms, f32)
    assert compare("b.grad", noise, np.zeros(4, np.float32), scale=terms).ok
    assert not cancelled(np.full(4, terms * 1e-3, np.float32), terms, f32)


def test_rdu_test_passes_with_dropout_and_a_seed(dropout_model: tuple[Path, Path]) -> None:
    model_path, pef = dropout_model
    report = rdu_test(model_path, pef, "--seed", str(SEED))
    exact = {t["name"] for t in report["tensors"] if t["section"] == "forward" and t["limit"] == 0}
    assert len(exact) == 2  # the two bool masks, held to equality


def test_the_rule_passes_rounding_noise_and_fails_a_1e_4_error() -> None:
    f32 = DEFAULT_TOLERANCES["float32"]
    assert f32.rtol <= 1e-5
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((16, 16)).astype(np.float32)
    noisy = (weight * (1 + rng.uniform(-2e-7, 2e-7, weight.shape))).astype(np.float32)
    assert compare("w", noisy, weight).ok
    assert not compare("w", weight * np.float32(1 + 1e-4), weight).ok
    # A gradient whose true value is 0 (attention's key bias): noise judged at its module's size
    grads = {"k.weight.grad": weight, "k.bias.grad": np.full(16, 3e-8, np.float32)}
    fabric_bias = np.full(16, -2e-8, np.float32)
    scale, _ = scale_of("gradient", "k.bias.grad", grads, {})
    assert scale == np.abs(weight).max()
    assert not compare("k.bias.grad", fabric_bias, grads["k.bias.grad"]).ok  # own size: noise
    assert compare("k.bias.grad", fabric_bias, grads["k.bias.grad"], scale=scale).ok
    # A parameter after a step: relative to the update, absolute to the parameter's own size
    before = {"w": np.ones(4, np.float32)}
    after = np.full(4, 1 - 1e-3, np.float32)
    scale, update = scale_of("parameter", "w", {"w": after}, before)
    one_ulp = np.nextafter(after, np.float32(2))
    assert compare("w", one_ulp, after, scale=scale, relative_to=update).ok
    wrong = (1 - np.float32(1e-3) * np.float32(1.001)).astype(np.float32) * np.ones(4, np.float32)
    assert not compare("w", wrong, after, scale=scale, relative_to=update).ok
    # Exact dtypes and non-finite values
    assert not compare("mask", np.array([True, False]), np.array([True, True])).ok
    assert compare("x", np.array([np.inf, 1.0]), np.array([np.inf, 1.0])).ok
    assert not compare("x", np.array([np.nan, 1.0]), np.array([0.0, 1.0])).ok


def test_the_bf16_rule_allows_torchs_own_sensitivity_and_no_more() -> None:
    """A bf16 tensor may differ from torch's in max(1/16, 2x the fraction torch differs from its
    legitimately rounded wide run) of its elements, and by torch's own distance normwise."""
    rng = np.random.default_rng(0)
    torch_bf16 = rng.standard_normal(1024).astype(bf16())
    flipped = torch_bf16.copy()
    flipped.view(np.uint16)[:300] += 1  # 29% of the elements a bf16 unit from torch's
    assert not compare("x", flipped, torch_bf16).ok  # past 1/16 with no torch error known
    # torch differs from its wide run in 10%, then 15% of the elements
    assert not compare("x", flipped, torch_bf16, torch_error=TorchError(0.0, 0.1)).ok
    row = compare("x", flipped, torch_bf16, torch_error=TorchError(0.0, 0.15))
    assert row.ok and row.mismatch_limit == pytest.approx(0.3) and row.mismatched > 1 / 16
    # Truncation where torch's rounding is certain (a weight's cast): the limit stays 1/16
    weight = rng.standard_normal(1024).astype(np.float32)
    cut = (weight.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32).astype(bf16())
    rounded = weight.astype(bf16())
    row = compare("w", cut, rounded, torch_error=float_error(rounded, rounded.copy()))
    assert not row.ok and row.mismatch_limit == 1 / 16 and row.mismatched > 0.4


def test_the_wide_run_rounds_the_other_way_only_within_the_float32_error() -> None:
    """round_legitimately: to nearest, except within the op's float32 error of a halfway point."""
    one, step = 1.0, 2.0**-7  # bf16 numbers near 1: 1, 1 + 2**-7, ...
    exact = torch.tensor([one + 0.3 * step, one + 0.5 * step - 1e-6, one + 0.5 * step + 2e-6, 2.0])
    approx = (exact + torch.tensor([0.0, 0.0, 0.0, 1e-5])).to(torch.float32)  # band 1e-5
    got = round_legitimately(exact.double(), approx).double().tolist()
    assert got == [one, one + step, one, 2.0]  # the two within 1e-5 of the halfway point flip
    assert round_legitimately(exact.double(), exact.float()).tolist() == [one, one, one + step, 2]


@pytest.mark.parametrize(
    "kind,unit", [("forward", "matmul"), ("backward", "matmul"), ("optimizer", "sub")]
)
def test_a_1e_4_error_in_one_unit_fails_its_section(
    mlp_pef: Path, monkeypatch: pytest.MonkeyPatch, kind: str, unit: str
) -> None:
    """A unit of the MLP whose result is 1e-4 off fails its own section at the defaults."""
    program = read_pef(mlp_pef)
    names = [p.name for s in program.sections if s.kind == kind for p in s.pcus]
    target = next(n for n in names if n.startswith(unit))
    write = fabric_module._write

    def faulty(plan, buffers, array):  # noqa: ANN001
        if f"'{target}'" in plan.label or f"'{target} copy " in plan.label:  # every copy
            array = np.asarray(array) * np.float32(1 + 1e-4)
        return write(plan, buffers, array)

    monkeypatch.setattr(fabric_module, "_write", faulty)
    rows = check_against_torch(_run(MLP, mlp_pef))
    failed = {r.section for r in rows if not r.ok}
    assert kind in failed, (
        target,
        max((r for r in rows if r.section == kind), key=lambda r: r.ratio),
    )


def test_report_is_worst_first_with_a_verdict_per_section(mlp_pef: Path) -> None:
    result = in_process("rdu-test", str(MLP), "--pef", str(mlp_pef))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("rdu-test: PASS: forward ok")
    assert all(s in lines[-1] for s in ("backward ok", "optimizer ok", f"{END_TO_END} ok"))
    limits = [float(line.split("limit ")[1].split()[0]) for line in lines if " limit " in line]
    errors = [float(line.split("max abs ")[1].split()[0]) for line in lines if " limit " in line]
    ratios = [e / max(lim, 1e-300) for e, lim in zip(errors, limits, strict=True)]
    assert ratios == sorted(ratios, reverse=True) and len(ratios) > 20

    strict = in_process(
        "rdu-test",
        str(MLP),
        "--pef",
        str(mlp_pef),
        "--json",
        "--rtol",
        "0",
        "--atol",
        "0",
        "--torch-error",
        "0",
    )
    assert strict.returncode == 1
    report = json.loads(strict.stdout)
    assert report["verdict"] == "fail" and report["tolerance"]["float32"] == {"rtol": 0, "atol": 0}
    assert report["sections"]["forward"]["failed"]


def test_inference_pef_judges_the_forward(mlp_inference_pef: Path) -> None:
    report = rdu_test(MLP, mlp_inference_pef)
    assert list(report["sections"]) == ["forward"]
    assert {t["name"] for t in report["tensors"]} == {"output.0"}


def test_the_float64_reference_makes_the_models_new_tensors_in_float64(tmp_path: Path) -> None:
    """The float64 run of an inference PEF's model is as if it were written for float64: a tensor
    it makes without a dtype is float64 (float64's lowest number fits), and the default dtype is
    float32 again after."""
    model = tmp_path / "model.py"
    model.write_text(FLOOR_WITHOUT_A_DTYPE)
    out = tmp_path / "out"
    args = ("-b", "4", "--inference", "--output-folder", str(out), "--pef-name", "floor")
    result = in_process("rdu-compile", str(model), *args)
    assert result.returncode == 0, result.stderr
    report = rdu_test(model, out / "floor" / "floor.pef")
    assert {t["name"] for t in report["tensors"]} == {"output.0"}
    assert torch.get_default_dtype() == torch.float32


def test_a_bad_tolerance_is_one_line(mlp_pef: Path) -> None:
    result = tool("rdu-test", str(MLP), "--pef", str(mlp_pef), "--rtol", "-1")
    assert result.returncode == 1
    assert result.stderr.strip() == "rdu-test: error: --rtol must be a number >= 0, got -1.0"


def test_the_tolerance_line_names_the_bf16_rule_of_a_bf16_pef() -> None:
    """rdu-test's ``tolerance:`` line says what a bf16-mixed PEF's values were held to, not only
    the float32 rule (which a float32 value computed through bf16 is not judged by)."""
    fp32 = _tolerance_text({}, "fp32")
    mixed = _tolerance_text({}, "bf16-mixed")
    assert "bf16" not in fp32
    assert mixed.startswith(fp32)
    bf16 = DEFAULT_TOLERANCES["bfloat16"]
    assert "--precision bf16-mixed" in mixed
    assert f"rtol {bf16.rtol:.3g}" in mixed and f"max({bf16.mismatch:.3g}, " in mixed
