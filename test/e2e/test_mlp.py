"""The MLP end to end: compile, compare with torch, train, resume, infer."""

from __future__ import annotations

import argparse
import re
import textwrap
from pathlib import Path

import numpy as np
import torch
from e2e_helpers import (
    MLP,
    compile_mlp,
    in_process,
    judged,
    losses_beside_torch,
    rdu_test,
    tool,
)

from runtime.pef import read_pef
from runtime.session import TrainingSession
from tools.model_file import load_model_file


def test_rdu_test_passes_at_its_defaults(mlp_pef: Path) -> None:
    report = rdu_test(MLP, mlp_pef)
    assert list(report["sections"]) == ["forward", "backward", "optimizer", "end to end"]
    assert {"loss", "output.0"} <= judged(report, "forward") & judged(report, "end to end")
    for param in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"):
        assert f"{param}.grad" in judged(report, "backward") & judged(report, "end to end")
        assert param in judged(report, "optimizer")


def _args(batch_size: int = 16) -> argparse.Namespace:
    return argparse.Namespace(batch_size=batch_size, seed=0, epoch=0, hidden=128, classes=10)


def test_100_steps_track_torch_within_1e_4(mlp_pef: Path) -> None:
    model_file = load_model_file(MLP)
    args = _args()
    torch.manual_seed(0)
    model = model_file.call("model", args)
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    session = TrainingSession(read_pef(mlp_pef), state)
    optimizer = model_file.call("optimizer", model.parameters(), args)
    group = optimizer.param_groups[0]
    hyper = {k: group[k] for k in ("lr", "momentum", "weight_decay", "dampening")}
    batches = []
    for epoch in range(2):
        args.epoch = epoch
        batches += list(model_file.batches("train", args))
    fabric, reference = losses_beside_torch(
        session, model_file, model, optimizer, batches[:100], hyper
    )
    assert reference[-1] < reference[0] / 2  # it is learning
    np.testing.assert_allclose(fabric, reference, rtol=1e-4)


def test_resume_is_exact(tmp_path: Path, mlp_pef: Path) -> None:
    """100 steps straight are 50, a checkpoint and 50 more, bit for bit (the runs in this
    process: test/hardening/test_faults.py resumes as processes)."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = [str(MLP), "--pef", str(mlp_pef), "--ckpt-every", "0"]
    ran = in_process("rdu-run", *common, "--num-steps", "100", "--ckpt-dir", str(straight))
    assert ran.returncode == 0, ran.stderr
    ran = in_process("rdu-run", *common, "--num-steps", "50", "--ckpt-dir", str(split))
    assert ran.returncode == 0, ran.stderr
    resumed = in_process(
        "rdu-run", *common, "--num-steps", "100", "--ckpt-dir", str(split),
        "--init-ckpt-path", str(split / "last.pt"),
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(split / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 100
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    # The checkpoint loads straight into the user's torch model and optimizer.
    model_file = load_model_file(MLP)
    model = model_file.call("model", _args())
    model.load_state_dict(a["model"])
    model_file.call("optimizer", model.parameters(), _args()).load_state_dict(a["optimizer"])


BLOCK_AND_RUN = textwrap.dedent(
    """
    import sys, importlib.abc
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("xdsl", "dialects", "compiler", "ml_dtypes"):
                raise ImportError(f"blocked: {name}")
    sys.meta_path.insert(0, Block())
    import torch
    def refuse(*a, **k):
        raise AssertionError("the runtime ran the torch model")
    torch.nn.Module.__call__ = refuse
    torch.fx.GraphModule.__call__ = refuse
    from tools.rdu_run import main
    sys.argv = ["rdu-run"] + sys.argv[1:]
    main()
    """
)


def test_runtime_runs_without_the_compiler_or_torch_graphs(tmp_path: Path, mlp_pef: Path) -> None:
    """rdu-run trains with the compiler's packages and ml_dtypes blocked (a float32 program never
    asks for bf16; importing ml_dtypes takes most of a second) and torch's modules refusing."""
    script = tmp_path / "blocked_run.py"
    script.write_text(BLOCK_AND_RUN)
    result = tool(
        "python",
        str(script),
        str(MLP),
        "--pef",
        str(mlp_pef),
        "--num-steps",
        "5",
        "--ckpt-dir",
        str(tmp_path / "ck"),
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ck" / "last.pt").exists()


def test_size_does_not_grow_with_width_or_batch(tmp_path: Path) -> None:
    from compiler.driver import count_ops  # noqa: F401  (the driver writes the counts to the log)

    base = compile_mlp(tmp_path / "base")
    wide = compile_mlp(tmp_path / "wide", "--pef-name", "wide", "--hidden", "4096")
    big_batch = compile_mlp(tmp_path / "batch", "--pef-name", "batch", "-b", "512")
    bigger = compile_mlp(tmp_path / "bigger", "--pef-name", "bigger", "-b", "4096")

    def pcu_pmu_ops(pef: Path) -> str:
        log = pef.with_suffix(".log").read_text()
        return re.search(r"placed: (.*)", log).group(1)

    for other in (wide, big_batch, bigger):
        assert pcu_pmu_ops(other) == pcu_pmu_ops(base)
    # Wider, the same ops; its sections no longer fit plasticine together, and its optimizer
    # updates each weight in as many copies as the PMUs the forward holds it in
    # (parallelize-units' state in pieces): more copies, more routes, bounded by the fabric.
    assert wide.stat().st_size <= 1.5 * base.stat().st_size

    # More work a unit gets more copies (parallelize-units balances a section's critical path),
    # which the fabric bounds. At the default batch the sections share plasticine, co-resident,
    # each taking its share of the PCUs; at 512 parallelize-units' estimate finds each section
    # with the whole fabric faster, so they are not (more copies, more routes: under half as
    # large again), and keep what they can on chip in pinned PMUs; at 4096 (8 times the data of
    # 512) their buffers no longer fit together at all, and the PEF is within a tenth of 512's.
    assert big_batch.stat().st_size <= 1.5 * base.stat().st_size
    assert bigger.stat().st_size <= 1.1 * big_batch.stat().st_size
    resident = read_pef(base).resident
    assert resident is not None and resident.co_resident
    resident = read_pef(bigger).resident
    assert resident is None or not resident.co_resident


def test_inference_pef_is_under_half_the_training_pef(
    mlp_pef: Path, mlp_inference_pef: Path
) -> None:
    assert read_pef(mlp_inference_pef).meta.inference
    assert [s.name for s in read_pef(mlp_inference_pef).sections] == ["forward"]
    assert mlp_inference_pef.stat().st_size < mlp_pef.stat().st_size / 2


def test_unsupported_op_names_the_op_and_the_line(tmp_path: Path) -> None:
    source = MLP.read_text().replace(
        "        return self.fc2(self.act(self.fc1(x)))",
        "        h = torch.special.bessel_j0(x)\n        return self.fc2(self.act(self.fc1(h)))",
    )
    model = tmp_path / "bessel" / "model.py"
    model.parent.mkdir()
    model.write_text(source)
    line = source.splitlines().index("        h = torch.special.bessel_j0(x)") + 1
    result = tool("rdu-compile", str(model), "--output-folder", str(tmp_path / "out"))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "bessel_j0" in lines[0] and f"model.py:{line}" in lines[0]
    assert "Traceback" not in result.stderr


def test_flipped_byte_is_refused_with_checksum_error(tmp_path: Path, mlp_pef: Path) -> None:
    data = bytearray(mlp_pef.read_bytes())
    data[len(data) // 2] ^= 0x40
    bad = tmp_path / "bad.pef"
    bad.write_bytes(bytes(data))
    result = tool("rdu-run", str(MLP), "--pef", str(bad), "--test")
    assert result.returncode == 1
    assert "checksum" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_demo_workflow_reaches_90_percent(
    tmp_path: Path, mlp_pef: Path, mlp_inference_pef: Path
) -> None:
    ckpt = tmp_path / "ck"
    train = tool(
        "rdu-run", str(MLP), "--pef", str(mlp_pef), "--num-epochs", "4", "--ckpt-dir", str(ckpt)
    )
    assert train.returncode == 0, train.stderr
    assert "loss" in train.stdout and "test acc" in train.stdout
    assert (tool("rdu-run", str(MLP), "--pef", str(mlp_pef), "--test")).returncode == 0
    results = tmp_path / "results"
    infer = tool(
        "rdu-run",
        str(MLP),
        "--pef",
        str(mlp_inference_pef),
        "--inference",
        "--init-ckpt-path",
        str(ckpt / "last.pt"),
        "--results-dir",
        str(results),
    )
    assert infer.returncode == 0, infer.stderr
    accuracy = float(re.search(r"accuracy ([0-9.]+)", infer.stdout).group(1))
    assert accuracy >= 0.90
    rows = (results / "predictions.csv").read_text().splitlines()
    assert rows[0] == "index,prediction,label" and len(rows) > 300


def test_the_digits_are_scikit_learns() -> None:
    """The MLP reads the digits file scikit-learn ships without importing it: the same rows and
    labels as ``sklearn.datasets.load_digits``."""
    from sklearn.datasets import load_digits

    pixels, labels = load_model_file(MLP).module._digits()
    expected_pixels, expected_labels = load_digits(return_X_y=True)
    np.testing.assert_array_equal(pixels, expected_pixels)
    np.testing.assert_array_equal(labels, expected_labels)
