"""The runtime runs a PEF alone: no xdsl, no dialects, no compiler (and no torch outside
checkpoints). A subprocess blocks those imports and decodes and runs a PEF."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from pefkit import matmul_program

from runtime.pef import write_pef

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import importlib.abc
    import sys

    BLOCKED = ("xdsl", "dialects", "compiler", "torch")

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Blocker())
    for name in list(sys.modules):
        if name.split(".")[0] in BLOCKED:
            del sys.modules[name]

    import numpy as np

    import runtime.checkpoint  # torch only when a checkpoint is read or written
    import runtime.machine.perf
    from runtime.fabric import Fabric
    from runtime.pef import read_pef
    from runtime.session import InferenceSession

    program = read_pef(sys.argv[1])
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.arange(12, dtype=np.float32).reshape(3, 4)
    dram = {"a": a, "b": b}
    Fabric(program).run_section("forward", dram)
    assert np.array_equal(dram["out"], a @ b), dram["out"]
    out = InferenceSession(program, {}).run({"a": a, "b": b})
    assert np.array_equal(out["out"], a @ b)
    from runtime.machine.trace import RunRecorder, run_trace  # rdu-run --profile's timeline

    recorder, session = RunRecorder(), InferenceSession(program, {})
    recorder.attach(session.fabric)
    session.run({"a": a, "b": b})
    assert run_trace(program, recorder)["otherData"]["section_runs"] == {"forward": 1}
    try:
        import xdsl  # noqa: F401
    except ImportError:
        pass
    else:
        raise AssertionError("the blocker does not work")
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    print("ok")
    """
)


def test_runtime_runs_without_compiler_dialects_xdsl_torch(tmp_path) -> None:
    path = tmp_path / "mm.pef"
    write_pef(path, matmul_program(2, 3, 4))
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
