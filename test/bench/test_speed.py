"""bench/speed.py keeps working: its tables, verdicts and results file from measurements, its
child processes' bookkeeping, and the models' options it reads.

Not a timed test: it checks what the benchmark makes of its measurements, never how fast
anything is. The measurements themselves (fresh ``rdu-compile`` processes, ``torch.compile``,
the emulator beside torch eager) take about a minute even in ``--quick`` mode: that run is the
``slow`` test at the end, left out of the default suite (``pytest -m slow test/bench``).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "speed.py"


def _speed() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_speed", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_speed"] = module
    spec.loader.exec_module(module)
    return module


speed = _speed()


def _measured(monkeypatch: pytest.MonkeyPatch, fabric_cpu_s: dict[str, float]) -> list[str]:
    """Replace the three measurements by fixed figures (no process starts); the emulator's
    train step takes ``fabric_cpu_s[model]`` of CPU against torch's 0.01 s. Returns the calls."""
    calls: list[str] = []

    def rdu_compile(path, argv, batch, inference, out, name, repeats) -> dict[str, Any]:
        precision = argv[argv.index("--precision") + 1] if "--precision" in argv else "fp32"
        calls.append(f"compile {name} ({precision})")
        return {"seconds": 2.0, "all_seconds": [2.0], "cpu_seconds": 1.5, "peak_mb": 300.0,
                "pef": str(out / name / f"{name}.pef"), "cycles": 1000, "section_cycles": {},
                "modelled_us": 1.0, "pef_bytes": 10}  # fmt: skip

    def inductor(path, argv, batch, backend, precision="fp32") -> dict[str, Any]:
        calls.append(f"torch.compile {backend} ({precision})")
        return {"backend": backend, "seconds": 10.0, "cpu_seconds": 9.0,
                "first_call_seconds": 5.0, "peak_mb": 500.0}  # fmt: skip

    def emulator(
        path, argv, train_pef, inference_pef, repeats, budget, precision="fp32"
    ) -> dict[str, Any]:
        model = Path(train_pef).name.split("-")[0]
        calls.append(f"emulator {model} ({precision})")
        timing = {"median_s": 0.05, "cpu_median_s": fabric_cpu_s[model], "runs": 1,
                  "warmup_s": 0.1}  # fmt: skip
        eager = {"median_s": 0.01, "cpu_median_s": 0.01, "runs": 1, "warmup_s": 0.1}
        return {"blas": "openblas", "before_fabric_peak_mb": 1.0, "runtime_peak_mb": 2.0,
                "threads": 1, "train": {"fabric": timing, "torch": eager},
                "inference": {"fabric": timing, "torch": eager}}  # fmt: skip

    monkeypatch.setattr(speed, "rdu_compile", rdu_compile)
    monkeypatch.setattr(speed, "inductor", inductor)
    monkeypatch.setattr(speed, "emulator", emulator)
    return calls


def test_a_run_writes_its_rows_and_verdicts_and_keeps_other_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = _measured(monkeypatch, {"mlp": 0.02, "gpt": 0.05})
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"dp": {"kept": True}}))
    argv = ["--models", "mlp,gpt", "--backend", "eager", "--no-scaling", "--out", str(results)]
    assert speed.main(argv) == 0
    assert calls == [
        "compile mlp-training (fp32)", "compile mlp-inference (fp32)",
        "compile mlp-bf16-mixed (bf16-mixed)", "torch.compile eager (fp32)",
        "torch.compile eager (bf16-mixed)", "emulator mlp (fp32)", "emulator mlp (bf16-mixed)",
        "compile gpt-training (fp32)", "compile gpt-inference (fp32)",
        "compile gpt-bf16-mixed (bf16-mixed)", "torch.compile eager (fp32)",
        "torch.compile eager (bf16-mixed)", "emulator gpt (fp32)", "emulator gpt (bf16-mixed)",
    ]  # fmt: skip
    out = capsys.readouterr().out
    assert "compile (whole command, fresh process)" in out
    assert "emulator (one thread each" in out
    data = json.loads(results.read_text())
    assert data["dp"] == {"kept": True}
    doc = data["speed"]
    assert doc["quick"] is False and doc["machine"]["nproc"] >= 1
    rows = {(r["model"], r["kind"]): r for r in doc["compile"]}
    for kind in ("training", "inference"):
        row = rows[("mlp", kind)]
        assert row["ratio"] == 0.2 and row["pef"] == f"mlp-{kind}.pef"  # its name only
    # torch.compile's "eager" backend is not inductor: the compile target is not judged.
    assert doc["targets"]["compile/mlp"] == {"ratio": 0.2, "met": None}
    # The emulator's target (3x torch eager) is judged on CPU time: 2x is met, 5x is missed.
    assert doc["targets"]["emulator/mlp/train"]["met"] is True
    assert doc["targets"]["emulator/gpt/train"]["met"] is False
    assert doc["targets"]["emulator/gpt/train"]["ratio"] == pytest.approx(5.0)
    assert "MISSED" in out and "ok" in out
    # bf16-mixed: the compile beside torch.compile under autocast, the training step beside
    # torch under autocast; figures, not judged against the fp32 targets.
    assert rows[("gpt", "bf16-mixed")]["ratio"] == 0.2
    modes = {(r["model"], r["mode"]): r for r in doc["emulator"]}
    assert set(modes) == {
        (m, k) for m in ("mlp", "gpt") for k in ("train", "inference", "bf16-mixed")
    }
    assert modes[("gpt", "bf16-mixed")]["cpu_ratio"] == pytest.approx(5.0)
    assert not [k for k in doc["targets"] if "bf16" in k]
    assert "\ngpt     bf16-mixed" in out


def test_no_bf16_leaves_the_bf16_mixed_rows_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _measured(monkeypatch, {"mlp": 0.02})
    argv = ["--models", "mlp", "--no-inductor", "--no-scaling", "--no-bf16"]
    assert speed.main([*argv, "--out", str(tmp_path / "r.json")]) == 0
    assert calls == ["compile mlp-training (fp32)", "compile mlp-inference (fp32)",
                     "emulator mlp (fp32)"]  # fmt: skip


def test_quick_mode_is_the_mlp_once_with_torch_eager() -> None:
    opts = speed.parse(["--quick"])
    assert (opts.models, opts.repeats, opts.compile_repeats) == ("mlp", 1, 1)
    assert (opts.backend, opts.scaling) == ("eager", False)


def test_scaling_rows_and_verdicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _measured(monkeypatch, {})
    seconds = {"gpt-layers-2": 5.0, "gpt-layers-4": 6.0, "gpt-layers-8": 10.4}

    compiled: list[str] = []

    def rdu_compile(path, argv, batch, inference, out, name, repeats) -> dict[str, Any]:
        compiled.append(name)
        return {"seconds": seconds.get(name, 4.0), "cpu_seconds": 1.0, "peak_mb": 1.0,
                "cycles": 1}  # fmt: skip

    monkeypatch.setattr(speed, "rdu_compile", rdu_compile)
    bench = speed.Bench(speed.parse(["--models", "", "--out", str(tmp_path / "r.json")]), tmp_path)
    bench.scaling()
    targets = bench.verdicts()
    assert targets["scaling/layers"] == {"ratio": 1.3, "met": True}
    # 2 layers at hidden 128 is one point of both sweeps, compiled once: 5.0 s over 4.0 s.
    assert compiled == ["gpt-layers-2", "gpt-layers-4", "gpt-layers-8", "gpt-hidden-512",
                        "gpt-hidden-2048"]  # fmt: skip
    assert targets["scaling/hidden"] == {"ratio": 1.25, "met": True}
    assert [(r["sweep"], r["value"]) for r in bench.scaling_rows] == [
        ("layers", 2), ("layers", 4), ("layers", 8), ("hidden", 128), ("hidden", 512),
        ("hidden", 2048),
    ]  # fmt: skip
    assert "layers: 1.30x of linear (target <= 1.3) ok" in speed.table(bench.document())


def test_a_child_is_timed_and_its_failure_is_one_line() -> None:
    code = "import sys; print('{\"x\": 1}'); print('first\\nthe reason', file=sys.stderr)"
    child = speed.run_child([sys.executable, "-c", code])
    assert child.returncode == 0 and child.seconds > 0 and child.peak_mb > 0
    assert speed.child_json(child) == {"x": 1}
    failed = speed.run_child([sys.executable, "-c", code + "; sys.exit(3)"])
    assert failed.returncode == 3 and failed.reason() == "the reason"
    with pytest.raises(speed.Unavailable, match="^the reason$"):
        speed.child_json(failed)


def test_the_models_options_set_the_knobs() -> None:
    options = speed.child_options(str(ROOT / "examples" / "gpt" / "model.py"))
    assert options["--n-layer"] == 2
    argv = speed.model_args(speed.MODELS["gpt"], {"seq": 64, "layers": 4}, options, {"vocab": 9})
    assert argv == ["--block-size", "64", "--n-layer", "4"]
    notes: list[str] = []
    assert speed.model_args(speed.MODELS["gpt"], {}, options, {"vocab": 9}, notes) == []
    assert notes == ["vocab as the model.py sets it (no option for 9)"]
    with pytest.raises(speed.Unavailable, match="gpt's model.py has no option for vocab"):
        speed.model_args(speed.MODELS["gpt"], {"vocab": 9}, options)


def test_missing_model_is_a_row_not_a_failure(tmp_path: Path) -> None:
    model = speed.Model("nothing", ("no-such-example",), 8)
    opts = speed.parse(["--quick", "--out", str(tmp_path / "r.json")])
    bench = speed.Bench(opts, tmp_path)
    bench.model(model)
    reason = "no examples/no-such-example/model.py yet"
    assert bench.compile_rows == [{"model": "nothing", "kind": "training", "error": reason}]
    assert f"not available: {reason}" in speed.table(bench.document())


def test_scaling_verdicts() -> None:
    # A fixed start-up cost plus a cost per layer is linear.
    assert speed.linearity({2: 5.0, 4: 6.0, 8: 8.0}) == 1.0
    assert speed.linearity({2: 5.0, 4: 6.0, 8: 10.4}) == 1.3
    assert speed.linearity({2: 5.0, 4: 6.0}) is None
    assert speed.flatness({128: 4.0, 512: 5.0, 2048: 4.5}) == 1.25
    assert speed.flatness({128: 4.0}) is None


@pytest.mark.slow
def test_quick_run_measures_the_mlp(tmp_path: Path) -> None:
    """The real measurements, in ``--quick`` mode: every child process runs and gives figures."""
    results = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(results)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(results.read_text())["speed"]
    assert doc["quick"] is True
    rows = {(r["model"], r["kind"]): r for r in doc["compile"]}
    for kind in ("training", "inference"):
        row = rows[("mlp", kind)]
        assert "error" not in row, row
        assert row["seconds"] > 0 and row["peak_mb"] > 0 and row["cycles"] > 0
        assert row["torch_compile"]["backend"] == "eager" and row["ratio"] > 0
    modes = {r["mode"]: r for r in doc["emulator"] if r["model"] == "mlp"}
    assert set(modes) == {"train", "inference", "bf16-mixed"}  # bf16-mixed: its training step
    assert rows[("mlp", "bf16-mixed")]["torch_compile"]["backend"] == "eager"
    for row in modes.values():
        assert row["fabric_cpu_ms"] > 0 and row["torch_cpu_ms"] > 0 and row["threads"] == 1
        assert row["cycles"] > 0
    assert isinstance(doc["targets"]["emulator/mlp/train"]["met"], bool)
