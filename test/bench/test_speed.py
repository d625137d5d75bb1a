"""bench/speed.py keeps running: its quick mode end to end, and its scaling verdicts.

Not a timed test: it checks that the benchmark produces its rows, never how fast anything is.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "speed.py"


def _speed() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_speed", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_speed"] = module
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_its_rows_and_keeps_other_keys(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"dp": {"kept": True}}))
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "compile (whole command, fresh process)" in proc.stdout
    assert "emulator (one thread each" in proc.stdout
    data = json.loads(results.read_text())
    assert data["dp"] == {"kept": True}
    doc = data["speed"]
    assert doc["quick"] is True and doc["machine"]["nproc"] >= 1
    rows = {(r["model"], r["kind"]): r for r in doc["compile"]}
    for kind in ("training", "inference"):
        row = rows[("mlp", kind)]
        assert "error" not in row, row
        assert row["seconds"] > 0 and row["peak_mb"] > 0 and row["cycles"] > 0
        assert row["torch_compile"]["backend"] == "eager"
        assert row["ratio"] > 0
    modes = {r["mode"]: r for r in doc["emulator"] if r["model"] == "mlp"}
    assert set(modes) == {"train", "inference"}
    for row in modes.values():
        assert row["fabric_ms"] > 0 and row["torch_ms"] > 0 and row["threads"] == 1
        assert row["cycles"] > 0
    # torch.compile's "eager" backend is not inductor: the compile target is not judged.
    assert doc["targets"]["compile/mlp"]["met"] is None
    assert doc["targets"]["emulator/mlp/train"]["met"] in (True, False)


def test_missing_model_is_a_row_not_a_failure(tmp_path: Path) -> None:
    speed = _speed()
    model = speed.Model("nothing", ("no-such-example",), 8)
    opts = speed.parse(["--quick", "--out", str(tmp_path / "r.json")])
    bench = speed.Bench(opts, tmp_path)
    bench.model(model)
    reason = "no examples/no-such-example/model.py yet"
    assert bench.compile_rows == [{"model": "nothing", "kind": "training", "error": reason}]
    assert f"not available: {reason}" in speed.table(bench.document())


def test_scaling_verdicts() -> None:
    speed = _speed()
    # A fixed start-up cost plus a cost per layer is linear.
    assert speed.linearity({2: 5.0, 4: 6.0, 8: 8.0}) == 1.0
    assert speed.linearity({2: 5.0, 4: 6.0, 8: 10.4}) == 1.3
    assert speed.linearity({2: 5.0, 4: 6.0}) is None
    assert speed.flatness({128: 4.0, 512: 5.0, 2048: 4.5}) == 1.25
    assert speed.flatness({128: 4.0}) is None
