"""Checkpoints: written by the runtime, loaded by torch (and back), errors name the tensor."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from pefkit import linear_program

from runtime.checkpoint import (
    CheckpointError,
    load_checkpoint,
    optimizer_from_torch,
    optimizer_to_torch,
    save_checkpoint,
)
from runtime.pef.schema import Symbol
from runtime.session import TrainingSession

SGD = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01, "dampening": 0.0}
ADAMW = {"lr": 0.05, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "weight_decay": 0.1}


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)
        self.bn = torch.nn.BatchNorm1d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(x))


def trained(optimizer: str) -> tuple[Net, torch.optim.Optimizer]:
    torch.manual_seed(0)
    net = Net()
    if optimizer == "sgd":
        opt = torch.optim.SGD(net.parameters(), **SGD)
    else:
        opt = torch.optim.AdamW(
            net.parameters(), lr=0.05, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1
        )
    for _ in range(2):
        opt.zero_grad()
        net(torch.randn(5, 4)).pow(2).mean().backward()
        opt.step()
    return net, opt


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_round_trip_through_torch(tmp_path, optimizer: str) -> None:
    net, opt = trained(optimizer)
    params = [name for name, _ in net.named_parameters()]
    model = {k: v.numpy() for k, v in net.state_dict().items()}
    dram = optimizer_from_torch(opt.state_dict(), params, optimizer)
    keys = ("momentum_buffer",) if optimizer == "sgd" else ("exp_avg", "exp_avg_sq")
    assert set(dram) == {f"{p}.{k}" for p in params for k in keys}
    hyper = SGD if optimizer == "sgd" else ADAMW
    path = tmp_path / "ckpt" / "last.pt"
    save_checkpoint(
        path, model=model, optimizer=optimizer_to_torch(dram, params, optimizer, hyper, 2), step=2
    )
    assert os.listdir(path.parent) == ["last.pt"]

    # torch side: the documented one-liners work and give back the same state
    raw = torch.load(path, weights_only=True)
    assert raw["step"] == 2
    net2 = Net()
    net2.load_state_dict(raw["model"])
    if optimizer == "sgd":
        opt2 = torch.optim.SGD(net2.parameters(), lr=0.5)
    else:
        opt2 = torch.optim.AdamW(net2.parameters())
    opt2.load_state_dict(raw["optimizer"])
    for a, b in zip(net.state_dict().values(), net2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    want, got = opt.state_dict(), opt2.state_dict()
    assert got["param_groups"] == want["param_groups"]
    for i in want["state"]:
        for key, value in want["state"][i].items():
            assert torch.equal(got["state"][i][key], value), (i, key)
    # and both continue identically
    x = torch.randn(5, 4)
    for n, o in ((net, opt), (net2, opt2)):
        o.zero_grad()
        n(x).pow(2).mean().backward()
        o.step()
    for a, b in zip(net.parameters(), net2.parameters(), strict=True):
        assert torch.equal(a, b)

    # runtime side
    ckpt = load_checkpoint(path)
    assert ckpt["step"] == 2
    assert set(ckpt["model"]) == set(model)
    assert ckpt["model"]["bn.num_batches_tracked"].dtype == np.int64
    back = optimizer_from_torch(ckpt["optimizer"], params, optimizer)
    for name, value in dram.items():
        np.testing.assert_array_equal(back[name], value)


def test_step_zero_has_empty_state_like_torch() -> None:
    state = optimizer_to_torch(
        {"w.momentum_buffer": np.zeros(3, np.float32)}, ["w"], "sgd", SGD, step=0
    )
    assert state["state"] == {}
    assert state["param_groups"][0]["params"] == [0]
    assert state["param_groups"][0]["momentum"] == 0.9


def test_session_checkpoint_resumes_in_torch(tmp_path) -> None:
    """Train 2 steps on the fabric, checkpoint, then torch continues exactly like the fabric."""
    program = linear_program(8, 5, 3, "sgd")
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((3, 5), dtype=np.float32)
    batches = [
        (
            rng.standard_normal((8, 5), dtype=np.float32),
            rng.standard_normal((8, 3), dtype=np.float32),
        )
        for _ in range(3)
    ]
    session = TrainingSession(program, {"weight": w0})
    for x, t in batches[:2]:
        session.step({"input.0": x, "target.0": t}, SGD)
    state = session.state()
    path = tmp_path / "step2.pt"
    save_checkpoint(
        path,
        model={"weight": state["weight"]},
        optimizer=optimizer_to_torch(state, ["weight"], "sgd", SGD, session.step_count),
        step=session.step_count,
    )
    raw = torch.load(path, weights_only=True)
    model = torch.nn.Linear(5, 3, bias=False)
    model.load_state_dict(raw["model"])
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    opt.load_state_dict(raw["optimizer"])
    x, t = batches[2]
    opt.zero_grad()
    torch.nn.functional.mse_loss(model(torch.from_numpy(x)), torch.from_numpy(t)).backward()
    opt.step()
    session.step({"input.0": x, "target.0": t}, SGD)
    np.testing.assert_allclose(
        session.state()["weight"], model.weight.detach().numpy(), rtol=1e-5, atol=1e-6
    )

    # and the fabric resumes from the checkpoint too
    ckpt = load_checkpoint(
        path, expected=[s for s in program.meta.symbols if s.role == "parameter"]
    )
    optim = optimizer_from_torch(ckpt["optimizer"], ["weight"], "sgd")
    resumed = TrainingSession(program, {**ckpt["model"], **optim}, step=ckpt["step"])
    resumed.step({"input.0": x, "target.0": t}, SGD)
    np.testing.assert_allclose(resumed.state()["weight"], session.state()["weight"], rtol=1e-6)


def test_errors_name_the_tensor(tmp_path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, model={"w": np.zeros((2, 3), np.float32)}, optimizer=None, step=0)
    want = [Symbol("w", [2, 3], "f32", "parameter"), Symbol("b", [3], "f32", "parameter")]
    with pytest.raises(CheckpointError, match=r"c.pt: model: missing tensor 'b' \(the PEF expects"):
        load_checkpoint(path, expected=want)
    with pytest.raises(
        CheckpointError, match=r"tensor 'w' has shape \[2, 3\], the PEF expects \[3, 2\]"
    ):
        load_checkpoint(path, expected=[Symbol("w", [3, 2], "f32", "parameter")])
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"definitely not a zip or pickle")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="covers 1 parameters, the PEF has 2"):
        optimizer_from_torch({"state": {}, "param_groups": [{"params": [0]}]}, ["a", "b"], "sgd")
    with pytest.raises(CheckpointError, match="optimizer 'LBFGS' has no checkpoint format"):
        optimizer_to_torch({}, ["a"], "LBFGS", {}, 1)


def test_bare_state_dict_is_accepted(tmp_path) -> None:
    net = Net()
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    ckpt = load_checkpoint(tmp_path / "sd.pt")
    assert ckpt["step"] == 0 and ckpt["optimizer"] is None
    np.testing.assert_array_equal(ckpt["model"]["fc.weight"], net.fc.weight.detach().numpy())


def test_load_never_runs_code(tmp_path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    torch.save({"model": {}, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_a_failed_write_is_the_oserror_it_is_and_leaves_no_file(tmp_path, monkeypatch) -> None:
    """The checkpoint is streamed to its file (not serialised in memory first): a full disk is
    still reported as ENOSPC, not as torch's zip writer's RuntimeError."""
    import contextlib
    import errno

    import runtime.checkpoint as checkpoint

    class Full:
        written = 0

        def write(self, data) -> int:
            Full.written += len(data)
            if Full.written > 4096:
                raise OSError(errno.ENOSPC, "No space left on device")
            return len(data)

        def flush(self) -> None:
            pass

    monkeypatch.setattr(checkpoint, "atomic_writer", lambda path: contextlib.nullcontext(Full()))
    model = {"w": np.ones((64, 64), np.float32)}
    with pytest.raises(OSError) as raised:
        save_checkpoint(tmp_path / "c.pt", model=model, optimizer=None, step=0)
    assert raised.value.errno == errno.ENOSPC
