"""Embedded weights (``schema.Weights``, the ``weights`` section of an inference PEF): the round
trip at f32 and bf16 (half the bytes, rounded as torch rounds), the session running them, and
every malformed weights section refused by a one-line PefError naming the tensor."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
from pefkit import linear_program, matmul_program, replace

from runtime.checkpoint import CheckpointError
from runtime.pef import PefError, decode_pef, encode_pef
from runtime.pef.container import FLAG_INFERENCE, FLAG_WEIGHTS, pack_sections
from runtime.pef.schema import Program, Weights, WeightTensor
from runtime.session import InferenceSession
from runtime.weights import embedded_state, weights_section

RNG = np.random.default_rng(0)
WEIGHT = RNG.standard_normal((3, 5)).astype(np.float32)  # linear_program(2, 5, 3): [n, k]


def linear_with_weights() -> Program:
    program = linear_program(2, 5, 3, optimizer=None)
    return replace(program, weights=weights_section(program, {"weight": WEIGHT}, "/x/w.pt"))


def bf16_matmul_with_weights(b: np.ndarray) -> Program:
    """``out = a @ b`` in bf16, ``b`` a parameter embedded in the PEF."""
    program = matmul_program(2, 4, 3, dtype="bf16")
    symbols = [replace(s, role="parameter") if s.name == "b" else s for s in program.meta.symbols]
    program = replace(program, meta=replace(program.meta, symbols=symbols))
    return replace(program, weights=weights_section(program, {"b": b}, "b.pt"))


def test_f32_weights_round_trip_and_run() -> None:
    program = linear_with_weights()
    data = encode_pef(program)
    decoded = decode_pef(data)
    assert decoded == program and decoded.weights is not None
    assert decoded.weights.source == "w.pt"
    assert struct.unpack_from("<H", data, 10)[0] == FLAG_INFERENCE | FLAG_WEIGHTS
    state = embedded_state(decoded)
    np.testing.assert_array_equal(state["weight"], WEIGHT)
    x = RNG.standard_normal((2, 5)).astype(np.float32)
    out = InferenceSession(decoded, state).run({"input.0": x})["output.0"]
    np.testing.assert_allclose(out, x @ WEIGHT.T, rtol=1e-6)


def test_a_pef_without_weights_is_the_same_bytes() -> None:
    """No weights: no section and no flag, the bytes of a PEF before weights existed."""
    program = linear_program(2, 5, 3, optimizer=None)
    data = encode_pef(program)
    assert struct.unpack_from("<H", data, 10)[0] == FLAG_INFERENCE
    assert b"weights" not in data and decode_pef(data).weights is None
    assert embedded_state(decode_pef(data)) == {}


def test_bf16_weights_are_half_the_bytes_rounded_to_nearest_even_as_torch() -> None:
    b = RNG.standard_normal((4, 3)).astype(np.float32)
    b[0, 0] = 1 + 2**-8  # a tie: nearest even is 1.0 (truncation too; the next one is not)
    b[0, 1] = 1 + 3 * 2**-8  # a tie: nearest even is 1 + 2**-6, truncation gives 1 + 2**-7
    program = decode_pef(encode_pef(bf16_matmul_with_weights(b)))
    assert program.weights is not None
    (tensor,) = program.weights.tensors
    assert tensor.dtype == "bf16" and len(tensor.data) == b.size * 2
    torch_bf16 = torch.from_numpy(b).to(torch.bfloat16)
    assert tensor.data == torch_bf16.view(torch.int16).numpy().tobytes()
    state = embedded_state(program)
    assert state["b"].dtype == np.float32  # widened exactly, as a bf16 checkpoint loads
    np.testing.assert_array_equal(state["b"], torch_bf16.float().numpy())
    assert state["b"][0, 1] == 1 + 2**-6


def test_weights_that_do_not_fit_the_pef_are_refused_when_made() -> None:
    program = linear_program(2, 5, 3, optimizer=None)
    with pytest.raises(CheckpointError, match=r"w.pt: model: missing tensor 'weight'"):
        weights_section(program, {}, "w.pt")
    with pytest.raises(CheckpointError, match=r"'weight' has shape \[5, 3\], the PEF expects"):
        weights_section(program, {"weight": WEIGHT.T}, "w.pt")
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'other.bias'"):
        weights_section(program, {"weight": WEIGHT, "other.bias": WEIGHT}, "w.pt")
    allowed = weights_section(program, {"weight": WEIGHT, "tied": WEIGHT}, "w.pt", {"tied"})
    assert [t.symbol for t in allowed.tensors] == [0]


def _with(program: Program, *tensors: WeightTensor) -> Program:
    return replace(program, weights=Weights(source="w.pt", tensors=list(tensors)))


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ([], r"weights: no values for parameter 'weight' \(symbol 0\)"),
        ([(0, "f32", 60), (0, "f32", 60)], r"weights: tensor 1 \('weight'\): given twice"),
        ([(0, "bf16", 30)], r"tensor 0 \('weight'\): is bf16, the symbol is f32"),
        ([(0, "f32", 59)], r"tensor 0 \('weight'\): holds 59 bytes, f32 \[3, 5\] is 60"),
        ([(0, "f32", 60), (1, "f32", 40)], r"\('input.0'\): its role is input, not parameter"),
        ([(7, "f32", 60)], r"weights: tensor 0: symbol 7, out of range \(0..2\)"),
    ],
)
def test_a_malformed_weights_section_is_refused(tensors: list, message: str) -> None:
    program = _with(
        linear_program(2, 5, 3, optimizer=None),
        *(WeightTensor(symbol=s, dtype=d, data=bytes(n)) for s, d, n in tensors),
    )
    data = encode_pef(program, check=False)
    with pytest.raises(PefError, match=message):
        decode_pef(data)


def test_a_training_pef_with_weights_is_refused() -> None:
    program = linear_program(2, 5, 3)
    weights = WeightTensor(symbol=0, dtype="f32", data=WEIGHT.tobytes())
    with pytest.raises(PefError, match="weights: a training PEF holds no weights"):
        decode_pef(encode_pef(_with(program, weights), check=False))


def test_the_flag_and_the_weights_section_go_together() -> None:
    data = encode_pef(linear_with_weights())
    sections = _sections(data)
    without_flag = pack_sections(sections, flags=FLAG_INFERENCE)
    with pytest.raises(PefError, match="section 'weights' appears without the weights flag"):
        decode_pef(without_flag)
    without_section = pack_sections(sections[:-1], flags=FLAG_INFERENCE | FLAG_WEIGHTS)
    with pytest.raises(PefError, match="say the PEF has weights but its last section is 'forward'"):
        decode_pef(without_section)
    moved = pack_sections([sections[0], sections[2], sections[1]], flags=FLAG_INFERENCE)
    with pytest.raises(PefError, match="section 'weights' appears without the weights flag"):
        decode_pef(moved)
    garbled = pack_sections([*sections[:-1], ("weights", b"\x93\x01")], flags=FLAG_INFERENCE | 2)
    with pytest.raises(PefError, match="section 'weights': invalid payload"):
        decode_pef(garbled)


def _sections(data: bytes) -> list[tuple[str, bytes]]:
    count = struct.unpack_from("<I", data, 12)[0]
    out = []
    for i in range(count):
        raw, offset, size, _ = struct.unpack_from("<24sQII", data, 20 + 40 * i)
        out.append((raw.rstrip(b"\0").decode(), data[offset : offset + size]))
    return out


def test_non_persistent_buffers_stay_out_of_the_weights() -> None:
    """A buffer registered with ``persistent=False`` comes from the model: not required in the
    weights, and refused there."""
    from runtime.pef.schema import NonPersistentBuffer, Symbol

    program = linear_program(2, 5, 3, optimizer=None)
    meta = program.meta
    rope = Symbol(name="rope", shape=[2], dtype="f32", role="buffer")
    meta = replace(
        meta,
        symbols=[*meta.symbols, rope],
        non_persistent=[NonPersistentBuffer(symbol=len(meta.symbols), sha256="")],
    )
    program = replace(program, meta=meta)
    made = weights_section(program, {"weight": WEIGHT}, "w.pt", allowed={"rope"})
    assert [t.symbol for t in made.tensors] == [0]
    decode_pef(encode_pef(replace(program, weights=made)))
    extra = WeightTensor(symbol=len(meta.symbols) - 1, dtype="f32", data=bytes(8))
    bad = replace(made, tensors=[*made.tensors, extra])
    with pytest.raises(PefError, match=r"\('rope'\): a non-persistent buffer"):
        decode_pef(encode_pef(replace(program, weights=bad), check=False))
