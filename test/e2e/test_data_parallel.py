"""Data-parallel training of the MLP: ranks are local processes over loopback (gloo).

The reference for 2 ranks of per-rank batch 8 is 1 rank of batch 16: the same global batches
in the same order, so after the same steps the parameters agree to rounding.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import numpy as np
import pytest
import torch
from e2e_helpers import BIN, MLP, compile_mlp, tool

from compiler.data_parallel import mark_data_parallel
from runtime.distributed import Communicator, brief, shard
from runtime.pef import PefError, read_pef, validate
from runtime.pef.schema import Collective
from runtime.session import SessionError, TrainingSession
from tools.model_file import load_model_file

STEPS = 20
GRADIENTS = ["fc1.weight.grad", "fc1.bias.grad", "fc2.weight.grad", "fc2.bias.grad"]


@pytest.fixture(scope="module")
def pefs(tmp_path_factory: pytest.TempPathFactory, mlp_pef: Path) -> dict[str, Path]:
    """A data-parallel PEF of per-rank batch 8, and the plain one of batch 16."""
    out = tmp_path_factory.mktemp("dp")
    dp8 = compile_mlp(out, "-b", "8", "--data-parallel", "--pef-name", "dp8")
    assert read_pef(mlp_pef).meta.batch_size == 16
    return {"dp8": dp8, "b16": mlp_pef}


def _train(pef: Path, ckpt: Path, steps: int, *extra: str, launcher: str = "rdu-run"):
    common = [str(MLP), "--pef", str(pef), "--num-steps", str(steps), "--ckpt-dir", str(ckpt)]
    common += ["--ckpt-every", str(STEPS // 2), "--log-every", "10", *extra]
    if launcher == "torchrun":
        args = ["--standalone", "--nproc-per-node", "2", "-m", "tools.rdu_run", *common]
        result = tool("torchrun", *args, "--data-parallel")
    else:
        result = tool("rdu-run", *common)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def straight(pefs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """20 steps with 2 ranks (launched by torchrun) and with 1 rank of twice the batch, with a
    checkpoint half way."""
    out = tmp_path_factory.mktemp("straight")
    two = _train(pefs["dp8"], out / "two", STEPS, "--profile", launcher="torchrun")
    _train(pefs["b16"], out / "one", STEPS)
    # rank 0 alone prints (and writes last.pt, trace.json): each line once
    assert two.stdout.count("wrote ") == 2 and two.stdout.count(f"step {STEPS} ") == 1
    assert "on 2 ranks" in two.stdout
    return {"two": out / "two", "one": out / "one"}


def _assert_close(a_path: Path, b_path: Path) -> None:
    a = torch.load(a_path, weights_only=True)
    b = torch.load(b_path, weights_only=True)
    assert a["step"] == b["step"] == STEPS
    tensors = [(k, a["model"][k], b["model"][k]) for k in a["model"]]
    for i, state in a["optimizer"]["state"].items():
        other = b["optimizer"]["state"][i]["momentum_buffer"]
        tensors.append((f"momentum {i}", state["momentum_buffer"], other))
    for name, x, y in tensors:
        x, y = x.numpy(), y.numpy()
        assert np.linalg.norm(x - y) <= 1e-5 * np.linalg.norm(y), name
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=name)


def _args(batch_size: int) -> argparse.Namespace:
    return argparse.Namespace(batch_size=batch_size, seed=0, epoch=0, hidden=128, classes=10)


def test_pef_marks_the_gradients_it_averages(pefs: dict[str, Path]) -> None:
    meta = read_pef(pefs["dp8"]).meta
    assert meta.data_parallel and "--data-parallel" in meta.compile_flags
    assert [(c.op, c.before) for c in meta.collectives] == [("allreduce_mean", "optimizer")]
    assert [meta.symbols[i].name for i in meta.collectives[0].symbols] == GRADIENTS
    assert not read_pef(pefs["b16"]).meta.data_parallel
    shown = tool("rdu-pef", str(pefs["dp8"]), "--summary").stdout
    assert "training, data-parallel" in shown
    assert f"collective allreduce_mean before section optimizer: {' '.join(GRADIENTS)}" in shown
    refused = tool("rdu-compile", str(MLP), "--inference", "--data-parallel")
    assert refused.returncode == 1 and "--data-parallel" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_two_ranks_match_one_rank_of_twice_the_batch(straight: dict[str, Path]) -> None:
    _assert_close(straight["two"] / "last.pt", straight["one"] / "last.pt")
    init = load_model_file(MLP)
    torch.manual_seed(0)
    start = init.call("model", _args(8)).state_dict()
    trained = torch.load(straight["two"] / "last.pt", weights_only=True)["model"]
    assert not torch.allclose(trained["fc1.weight"], start["fc1.weight"], atol=1e-3)


def test_rank_0_writes_the_jobs_timeline_and_metrics(
    pefs: dict[str, Path], straight: dict[str, Path]
) -> None:
    """``--profile``: the collectives on the host track of ``trace.json`` (a gradient all-reduce
    a step, the initial broadcast); ``metrics.csv`` counts both ranks' samples."""
    import json

    from runtime.machine.perf import model_section

    doc = json.loads((straight["two"] / "trace.json").read_text())
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in doc["traceEvents"]
               if e["ph"] == "M" and e["name"] == "thread_name"}  # fmt: skip
    calls = [e for e in doc["traceEvents"]
             if e["ph"] == "X" and threads[(e["pid"], e["tid"])] == "collectives"]  # fmt: skip
    ops = [c["name"] for c in calls]
    assert ops.count("allreduce_mean") == STEPS and ops[0] == "broadcast"
    assert all(c["dur"] > 0 for c in calls)
    assert sum("before section 'optimizer'" in c["args"]["what"] for c in calls) == STEPS
    rows = (straight["two"] / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["10", "20"]
    program = read_pef(pefs["dp8"])
    step = sum(model_section(s, program.meta).seconds for s in program.sections)
    assert float(rows[1].split(",")[5]) == pytest.approx(2 * 8 / step, rel=1e-6)


def test_checkpoints_move_between_world_sizes(
    pefs: dict[str, Path], straight: dict[str, Path], tmp_path: Path
) -> None:
    half = f"step-{STEPS // 2}.pt"
    # 2 ranks' checkpoint at step 10, resumed by 1 rank (batch 16) to step 20
    _train(pefs["b16"], tmp_path / "a", STEPS, "--init-ckpt-path", str(straight["two"] / half))
    _assert_close(tmp_path / "a" / "last.pt", straight["one"] / "last.pt")
    # 1 rank's checkpoint at step 10, resumed by 2 ranks to step 20
    resume = ["--init-ckpt-path", str(straight["one"] / half), "--world-size", "2"]
    _train(pefs["dp8"], tmp_path / "b", STEPS, *resume)
    _assert_close(tmp_path / "b" / "last.pt", straight["two"] / "last.pt")


def _children(pid: int) -> dict[int, int]:
    """rank -> pid of the processes ``pid`` started with a RANK in their environment."""
    ranks = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        for var in env:
            if parent == pid and var.startswith(b"RANK="):
                ranks[int(var[5:])] = int(entry.name)
    return ranks


def _wait_for(path: Path, proc: subprocess.Popen, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"no {path} after {limit} s"
        time.sleep(0.05)


def _assert_loadable(ckpt_dir: Path) -> None:
    steps = sorted(int(p.stem.split("-")[1]) for p in ckpt_dir.glob("step-*.pt"))
    assert steps, list(ckpt_dir.iterdir())
    checkpoint = torch.load(ckpt_dir / f"step-{steps[-1]}.pt", weights_only=True)
    assert checkpoint["step"] == steps[-1]
    model_file = load_model_file(MLP)
    model = model_file.call("model", _args(8))
    model.load_state_dict(checkpoint["model"])
    optimizer = model_file.call("optimizer", model.parameters(), _args(8))
    optimizer.load_state_dict(checkpoint["optimizer"])


def _long_run(pef: Path, ckpt: Path) -> list[str]:
    return [str(MLP), "--pef", str(pef), "--num-steps", "5000", "--ckpt-dir", str(ckpt)]


def test_killed_rank_stops_the_launched_job(pefs: dict[str, Path], tmp_path: Path) -> None:
    ckpt = tmp_path / "ck"
    argv = _long_run(pefs["dp8"], ckpt) + ["--world-size", "2", "--ckpt-every", "20"]
    proc = subprocess.Popen(
        [str(BIN / "rdu-run"), *argv, "--dp-timeout", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(ckpt / "step-40.pt", proc)
        os.kill(_children(proc.pid)[1], signal.SIGKILL)
        killed = time.monotonic()
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert time.monotonic() - killed < 30
    assert proc.returncode == 1
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("rdu-run: error: rank 1 (pid ") and "killed by SIGKILL" in last
    assert "last complete checkpoint: " in last
    _assert_loadable(ckpt)


def test_surviving_rank_exits_with_one_line_when_a_peer_dies(
    pefs: dict[str, Path], tmp_path: Path
) -> None:
    """Ranks started the way torchrun starts them on two machines (no local agent to stop the
    job); rank 0, the one writing checkpoints, is killed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ckpt = tmp_path / "ck"
    argv = _long_run(pefs["dp8"], ckpt) + ["--data-parallel", "--ckpt-every", "20"]
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK="0")
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tools.rdu_run", *argv, "--dp-timeout", "20"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        _wait_for(ckpt / "step-40.pt", procs[0])
        procs[0].kill()
        killed = time.monotonic()
        out, err = procs[1].communicate(timeout=60)
    finally:
        for proc in procs:
            proc.kill()
            proc.communicate()
    assert time.monotonic() - killed < 30
    assert procs[1].returncode == 1
    assert out == ""  # rank 1 never prints progress
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    # the gradients' all-reduce, or the metrics' at a logging step
    assert re.fullmatch(r"rdu-run: error: rank 1: the .* failed: .*another rank died.*", lines[0])
    _assert_loadable(ckpt)


# -- in process: the session's hook, the PEF checks -----------------------------------------


class _Recorder(Communicator):
    """Two ranks, as seen by rank 0: records what it is asked and answers zeros."""

    world_size = 2

    def __init__(self) -> None:
        self.calls: list[str] = []

    def allreduce_mean(self, arrays, what):
        self.calls.append(what)
        return [np.zeros_like(a) for a in arrays]


def test_session_averages_gradients_before_the_optimizer(pefs: dict[str, Path]) -> None:
    program = read_pef(pefs["dp8"])
    torch.manual_seed(0)
    model = load_model_file(MLP).call("model", _args(8))
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    comm = _Recorder()
    session = TrainingSession(program, state, communicator=comm)
    x = np.random.default_rng(0).random((8, 64), dtype=np.float32)
    batch = {"input.0": x, "target.0": np.arange(8) % 10}
    hyper = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "dampening": 0.0}
    result = session.step(batch, hyper)
    assert comm.calls == [
        "the allreduce_mean of 4 tensors (and the loss) before section 'optimizer' in step 1"
    ]
    assert result.loss == 0.0  # the ranks' mean loss: every rank stops on the same NaN
    assert sorted(result.gradients) == sorted(GRADIENTS)
    assert all(not g.any() for g in result.gradients.values())  # what the optimizer saw
    for name, value in session.state().items():  # zero gradients, no weight decay: no change
        if name in state:
            np.testing.assert_array_equal(value, state[name], err_msg=name)
    alone = TrainingSession(program, state).step(batch, hyper)  # one rank: a plain step
    assert any(g.any() for g in alone.gradients.values())
    with pytest.raises(SessionError, match="rdu-compile --data-parallel"):
        TrainingSession(read_pef(pefs["b16"]), state, communicator=Communicator())


def test_data_parallel_pef_checks(pefs: dict[str, Path]) -> None:
    program = mark_data_parallel(read_pef(pefs["b16"]))
    validate(program)

    def broken(**changes) -> None:
        collective = msgspec.structs.replace(program.meta.collectives[0], **changes)
        meta = msgspec.structs.replace(program.meta, collectives=[collective])
        with pytest.raises(PefError, match="collective 0"):
            validate(msgspec.structs.replace(program, meta=meta))

    broken(before="nowhere")
    broken(symbols=[999])
    broken(symbols=[5, 5])
    labels = [i for i, s in enumerate(program.meta.symbols) if s.dtype == "i64"]
    broken(symbols=labels)
    meta = msgspec.structs.replace(program.meta, data_parallel=False)
    with pytest.raises(PefError, match="data_parallel is false"):
        validate(msgspec.structs.replace(program, meta=meta))
    assert isinstance(program.meta.collectives[0], Collective)


def test_buffers_a_section_writes_are_broadcast_from_rank_0(pefs: dict[str, Path]) -> None:
    """As torch's DDP does with batch-norm statistics; the MLP has none, so make one: the
    forward section's output stands in for a buffer it updates."""
    program = read_pef(pefs["b16"])
    symbols = list(program.meta.symbols)
    out = next(i for i, s in enumerate(symbols) if s.name == "output.0")
    symbols[out] = msgspec.structs.replace(symbols[out], role="buffer")
    meta = msgspec.structs.replace(program.meta, symbols=symbols)
    marked = mark_data_parallel(msgspec.structs.replace(program, meta=meta)).meta
    ops = [(c.op, c.before, c.symbols) for c in marked.collectives]
    assert ops[0] == ("broadcast", "forward", [out])
    assert [o[:2] for o in ops[1:]] == [("allreduce_mean", "optimizer")]


def test_shards_and_error_gist() -> None:
    rows = np.arange(12).reshape(6, 2)
    assert shard(rows, 1, 2).tolist() == rows[3:].tolist()
    assert np.concatenate([shard(rows, r, 3) for r in range(3)]).tolist() == rows.tolist()
    gloo = (
        "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
        "[127.0.0.1]:55218: Connection reset by peer. This is typically caused by a remote "
        "worker hanging. GLHF!"
    )
    assert brief(RuntimeError(gloo)) == "Read error [127.0.0.1]:55218: Connection reset by peer"
