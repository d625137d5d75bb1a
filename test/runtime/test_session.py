"""Training and inference sessions on hand-built PEFs, against torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pefkit import linear_program

from runtime.pef import decode_pef, encode_pef
from runtime.session import InferenceSession, SessionError, TrainingSession

B, K, N = 8, 5, 3


def data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((B, K), dtype=np.float32),
        rng.standard_normal((B, N), dtype=np.float32),
    )


def torch_model(weight: np.ndarray) -> torch.nn.Linear:
    model = torch.nn.Linear(K, N, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(weight))
    return model


def torch_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x, t) -> float:
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(torch.from_numpy(x)), torch.from_numpy(t))
    loss.backward()
    opt.step()
    return loss.item()


def initial_weight() -> np.ndarray:
    return np.random.default_rng(42).standard_normal((N, K), dtype=np.float32)


@pytest.mark.parametrize(
    ("optimizer", "hyper"),
    [
        ("sgd", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01, "dampening": 0.0}),
        ("adamw", {"lr": 0.05, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "weight_decay": 0.1}),
    ],
)
def test_training_matches_torch(optimizer: str, hyper: dict[str, float]) -> None:
    program = decode_pef(encode_pef(linear_program(B, K, N, optimizer)))
    w0 = initial_weight()
    session = TrainingSession(program, {"weight": w0})
    model = torch_model(w0)
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), **hyper)
    else:
        opt = torch.optim.AdamW(
            model.parameters(),
            lr=hyper["lr"],
            betas=(hyper["beta1"], hyper["beta2"]),
            eps=hyper["eps"],
            weight_decay=hyper["weight_decay"],
        )
    for step in range(4):
        x, t = data(step)
        result = session.step({"input.0": x, "target.0": t}, hyper)
        want_loss = torch_step(model, opt, x, t)
        assert result.loss == pytest.approx(want_loss, rel=1e-5)
        assert session.step_count == step + 1
        np.testing.assert_allclose(
            session.state()["weight"], model.weight.detach().numpy(), rtol=1e-5, atol=1e-6
        )
        assert set(result.outputs) == {"output.0"}
        np.testing.assert_allclose(
            result.gradients["weight.grad"], model.weight.grad.numpy(), rtol=1e-5, atol=1e-6
        )
    state = session.state()
    keys = ["momentum_buffer"] if optimizer == "sgd" else ["exp_avg", "exp_avg_sq"]
    torch_state = opt.state[model.weight]
    for key in keys:
        np.testing.assert_allclose(
            state[f"weight.{key}"], torch_state[key].numpy(), rtol=1e-5, atol=1e-7
        )
    assert all(a.dtype == np.float32 for a in state.values())
    assert session.fabric.counters["optimizer"].runs == 4


def test_adamw_bias_corrections_follow_the_step_count() -> None:
    program = linear_program(B, K, N, "adamw")
    session = TrainingSession(program, {"weight": initial_weight()}, step=9)
    hyper = {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
    x, t = data(0)
    session.step({"input.0": x, "target.0": t}, hyper)
    assert session.step_count == 10
    dram = session.last_dram
    assert dram["bias_correction1"] == np.float32(1 - 0.9**10)
    assert dram["bias_correction2_sqrt"] == np.float32(np.sqrt(1 - 0.999**10))
    assert dram["lr"].shape == () and dram["lr"].dtype == np.float32


def test_optimizer_state_starts_at_zero_and_extra_state_is_kept() -> None:
    session = TrainingSession(
        linear_program(B, K, N, "sgd"), {"weight": initial_weight(), "other": np.ones(2)}
    )
    state = session.state()
    assert np.all(state["weight.momentum_buffer"] == 0)
    assert "other" in state


def test_errors_name_the_tensor() -> None:
    program = linear_program(B, K, N, "sgd")
    hyper = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "dampening": 0.0}
    with pytest.raises(SessionError, match=r"missing parameter 'weight' \(\[3, 5\] f32\)"):
        TrainingSession(program, {})
    with pytest.raises(SessionError, match=r"parameter 'weight' has shape \[5, 3\], the PEF"):
        TrainingSession(program, {"weight": np.zeros((K, N), np.float32)})
    session = TrainingSession(program, {"weight": initial_weight()})
    x, t = data(0)
    with pytest.raises(SessionError, match=r"missing label 'target.0' \(\[8, 3\] f32\)"):
        session.step({"input.0": x}, hyper)
    with pytest.raises(SessionError, match=r"input 'input.0' has shape \[4, 5\]"):
        session.step({"input.0": x[:4], "target.0": t}, hyper)
    with pytest.raises(SessionError, match="input 'input.0' is complex64"):
        session.step({"input.0": x.astype(np.complex64), "target.0": t}, hyper)
    with pytest.raises(SessionError, match="hyperparameter .lr. is .fast., not a number"):
        session.step({"input.0": x, "target.0": t}, {**hyper, "lr": "fast"})
    with pytest.raises(SessionError, match="missing hyperparameter 'momentum'"):
        session.step({"input.0": x, "target.0": t}, {"lr": 0.1})
    assert session.step_count == 0
    # float64 host data is converted
    result = session.step({"input.0": x.astype(np.float64), "target.0": t}, hyper)
    assert np.isfinite(result.loss)


def test_a_failed_step_changes_nothing() -> None:
    program = linear_program(B, K, N, "sgd")
    session = TrainingSession(program, {"weight": initial_weight()})
    session.fabric.run_section = _fail_on("optimizer", session.fabric.run_section)
    x, t = data(0)
    hyper = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "dampening": 0.0}
    with pytest.raises(RuntimeError):
        session.step({"input.0": x, "target.0": t}, hyper)
    assert session.step_count == 0
    np.testing.assert_array_equal(session.state()["weight"], initial_weight())


def _fail_on(name, run):
    def wrapped(section, dram):
        if section == name:
            raise RuntimeError("boom")
        return run(section, dram)

    return wrapped


def test_inference_session() -> None:
    w = initial_weight()
    x, _ = data(3)
    for program in (linear_program(B, K, N, None), linear_program(B, K, N, "sgd")):
        session = InferenceSession(program, {"weight": w})
        out = session.run({"input.0": x, "target.0": np.zeros((B, N), np.float32)})
        np.testing.assert_allclose(out["output.0"], x @ w.T, rtol=1e-5, atol=1e-6)
        assert session.state()["weight"] is not None
    session = InferenceSession(linear_program(B, K, N, None), {"weight": w})
    with pytest.raises(SessionError, match="missing input 'input.0'"):
        session.run({})


def _with_non_persistent_weight(digest: str):
    """The inference linear PEF with its weight a non-persistent buffer of this digest."""
    import msgspec

    from runtime.pef.schema import NonPersistentBuffer

    program = linear_program(B, K, N, None)
    meta = program.meta
    index = next(i for i, s in enumerate(meta.symbols) if s.name == "weight")
    symbols = list(meta.symbols)
    symbols[index] = msgspec.structs.replace(symbols[index], role="buffer")
    meta = msgspec.structs.replace(
        meta, symbols=symbols, non_persistent=[NonPersistentBuffer(index, digest)]
    )
    return decode_pef(encode_pef(msgspec.structs.replace(program, meta=meta)))


def test_non_persistent_buffers_are_checked_against_the_compiled_values() -> None:
    from runtime.pef.digest import value_sha256

    w = initial_weight()
    program = _with_non_persistent_weight(value_sha256("f32", w))
    x, _ = data(3)
    out = InferenceSession(program, {"weight": w.astype(np.float64)}).run({"input.0": x})
    np.testing.assert_allclose(out["output.0"], x @ w.T, rtol=1e-5, atol=1e-6)
    with pytest.raises(SessionError, match=r"buffer 'weight' .* other values than the PEF"):
        InferenceSession(program, {"weight": w * 2})
    with pytest.raises(SessionError, match=r"missing buffer 'weight' .* persistent=False"):
        InferenceSession(program, {})
    # an empty digest (a buffer the model updates) is not checked
    InferenceSession(_with_non_persistent_weight(""), {"weight": w * 2})


def test_activations_are_dropped_after_their_last_reader_unless_kept() -> None:
    hyper = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "dampening": 0.0}
    x, t = data(0)
    session = TrainingSession(linear_program(B, K, N, "sgd"), {"weight": initial_weight()})
    dropped = session.step({"input.0": x, "target.0": t}, hyper)
    assert "saved.diff" not in session.last_dram and "weight.grad" in session.last_dram
    kept = TrainingSession(linear_program(B, K, N, "sgd"), {"weight": initial_weight()})
    kept.keep_activations = True
    same = kept.step({"input.0": x, "target.0": t}, hyper)
    assert "saved.diff" in kept.last_dram
    assert dropped.loss == same.loss
    np.testing.assert_array_equal(session.state()["weight"], kept.state()["weight"])
