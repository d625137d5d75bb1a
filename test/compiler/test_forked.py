"""Work beside the compile (``compiler.forked.Beside``): a forked child's result, or the work
run again here when the child fails; and the compile's uses of it (``driver``)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
import torch
from xdsl.dialects.builtin import ModuleOp
from xdsl.utils.exceptions import VerifyException

from compiler import driver
from compiler.forked import Beside, first_done
from compiler.ideal import counted_flops
from compiler.passes.convert_dataflow_to_rdu_tile import ConvertDataflowToRduTile
from compiler.targets import get_target
from tools.rdu_compile import model_spec

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

ROOT = Path(__file__).resolve().parents[2]


def test_the_work_runs_in_a_child_and_its_result_comes_back() -> None:
    with Beside(lambda: {"pid": os.getpid(), "values": [1, (2, 3)]}) as beside:
        got = beside.result()
    assert got["pid"] != os.getpid()
    assert got["values"] == [1, (2, 3)]


def test_a_child_sees_what_was_there_when_it_was_forked() -> None:
    seen = [1]
    with Beside(lambda: list(seen)) as beside:
        seen.append(2)  # after the fork: the child's copy has not changed
        assert beside.result() == [1]


def test_a_failed_child_has_the_work_run_here_which_raises_its_error() -> None:
    parent = os.getpid()

    def work() -> int:
        if os.getpid() != parent:
            os._exit(3)  # the child dies
        return 7

    assert Beside(work).result() == 7

    def fails() -> int:
        raise ValueError("no such unit")

    with pytest.raises(ValueError, match="no such unit"), Beside(fails) as beside:
        beside.result()


def test_without_fork_the_work_runs_when_its_result_is_asked_for() -> None:
    calls: list[int] = []
    beside = Beside(lambda: calls.append(os.getpid()) or len(calls), fork=False)
    assert calls == []
    assert beside.result() == 1
    assert calls == [os.getpid()]


def test_close_ends_a_child_whose_result_is_not_wanted() -> None:
    beside = Beside(lambda: time.sleep(60))
    assert beside.child is not None
    pid = beside.child[0]
    started = time.monotonic()
    beside.close()
    assert time.monotonic() - started < 30
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, 0)  # reaped: no child left behind


def test_a_child_counts_the_ideal_flops_as_this_process_does() -> None:
    """torch in a forked child (one thread): FlopCounterMode on fake tensors gives the count."""
    target = get_target("sn10")
    _, spec = model_spec(str(ROOT / "examples/mlp/model.py"), [], False, 8, 0, False, target)
    here = counted_flops(spec, inference=False)
    with Beside(lambda: (counted_flops(spec, inference=False), torch.get_num_threads())) as b:
        there, threads = b.result()
    assert there == here > 0
    assert threads == 1


def test_an_invalid_ir_is_reported_by_its_verifier_whatever_else_failed() -> None:
    class Invalid:
        def verify(self) -> None:
            raise VerifyException("operand is not a tensor")

    module = cast(ModuleOp, Invalid())
    with pytest.raises(VerifyException, match="operand is not a tensor"):
        with driver.verified_beside(module):
            raise KeyError("the PEF's making met the invalid IR first")
    with pytest.raises(VerifyException, match="operand is not a tensor"):
        with driver.verified_beside(module):
            pass
    with driver.verified_beside(module, verify=False):
        pass


def test_first_done_is_a_child_that_has_ended_or_work_to_run_here() -> None:
    with Beside(lambda: time.sleep(30)) as slow, Beside(lambda: "quick") as quick:
        assert first_done([slow, quick]) == 1
        assert quick.result() == "quick"
        here = Beside(lambda: "here", fork=False)
        assert first_done([slow, here]) == 1


def test_a_compile_whose_final_ir_is_invalid_writes_neither_pef_nor_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The report is made while the final IR is verified beside, and written, as the PEF,
    # only once the IR passed.
    def final(module: ModuleOp) -> bool:
        return any(op.name.startswith("pcu.") for op in module.walk())

    compile_mlp = _mlp_compile_invalid_when(final, "the final IR is invalid", monkeypatch)
    with pytest.raises(VerifyException, match="the final IR is invalid"):
        compile_mlp(tmp_path)
    written = {p.name for p in tmp_path.iterdir()}
    assert not written & {"mlp.pef", "report.json", "report.html", "trace.json"}, written
    assert "mlp.pinned.mlir" in written  # the compile got that far


def test_a_compile_whose_frontend_ir_is_invalid_reports_its_verifier_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The frontend's IR is verified beside the first pass, which lowers it: the verifier's
    # error is the one reported, whether that pass failed on the IR or not.
    def frontend(module: ModuleOp) -> bool:
        return not any(op.name.startswith("rdu_tile.") for op in module.walk())

    compile_mlp = _mlp_compile_invalid_when(frontend, "the frontend's IR is invalid", monkeypatch)
    with pytest.raises(VerifyException, match="the frontend's IR is invalid"):
        compile_mlp(tmp_path)
    assert not (tmp_path / "mlp.rdu_tile.mlir").exists()  # stopped after the first pass

    def first_pass_fails(self: object, ctx: object, op: ModuleOp) -> None:
        raise KeyError("the first pass met the invalid IR")

    monkeypatch.setattr(ConvertDataflowToRduTile, "apply", first_pass_fails)
    with pytest.raises(VerifyException, match="the frontend's IR is invalid"):
        compile_mlp(tmp_path)


def _mlp_compile_invalid_when(
    invalid: Callable[[ModuleOp], bool], message: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[[Path], object]:
    """The MLP example's compile (into a folder), with the verifier failing with ``message``
    on a module ``invalid`` says is."""
    real_verify = ModuleOp.verify

    def verify(self: ModuleOp) -> None:
        if invalid(self):
            raise VerifyException(message)
        real_verify(self)

    target = get_target("sn10")
    _, spec = model_spec(
        str(ROOT / "examples" / "mlp" / "model.py"), [], False, 8, 0, False, target
    )
    monkeypatch.setattr(ModuleOp, "verify", verify)
    return lambda out_dir: driver.compile_model(
        spec, inference=False, target=target, out_dir=out_dir, pef_name="mlp", flags=[],
        source_hash="", batch_size=8,
    )  # fmt: skip
