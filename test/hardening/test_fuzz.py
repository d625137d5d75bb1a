"""Fuzz tests (hypothesis, a bounded number of derandomized cases so CI stays fast): mutated and
random inputs to the PEF reader and to rdu-opt's parser front raise our own error type or
nothing, in bounded time. ``fuzz_atheris.py`` beside this file runs the same checks for longer.
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest
from fuzzing import (
    IR_TOKENS,
    check_ir,
    check_pef,
    ir_seeds,
    mutate,
    reframe,
    split_sections,
    time_bound,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.pef import PefError, decode_pef, encode_pef
from runtime.pef.container import MAGIC
from tools.rdu_opt import IrError, load_ir

FUZZ = settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

edits = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.integers(0, 1 << 20),
        st.one_of(st.binary(min_size=1, max_size=8), st.sampled_from(IR_TOKENS).map(str.encode)),
    ),
    min_size=1,
    max_size=4,
)

SEEDS = ir_seeds()


# -- rdu-opt's parser front ----------------------------------------------------------------------


@FUZZ
@given(seed=st.integers(0, len(SEEDS) - 1), changes=edits)
def test_mutated_ir_raises_only_ir_errors(seed: int, changes: list) -> None:
    with time_bound(10):
        check_ir(mutate(SEEDS[seed].encode(), changes))


@FUZZ
@given(pieces=st.lists(st.sampled_from([*IR_TOKENS, *"abcdefxyz0123456789._ "]), max_size=60))
def test_random_ir_raises_only_ir_errors(pieces: list[str]) -> None:
    with time_bound(10):
        check_ir("".join(pieces))


@FUZZ
@given(data=st.binary(max_size=200))
def test_random_bytes_raise_only_ir_errors(data: bytes) -> None:
    with time_bound(10):
        check_ir(data)


def test_found_by_fuzzing_unterminated_string_and_huge_integer_type() -> None:
    """Two inputs that hung or crashed xdsl's parser: a string missing its closing quote on a
    long line (exponential regex backtracking) and an integer type of absurd width."""
    line = 'dataflow.section @s "forward attributes {arg_names = [], arg_roles = [], x = []} {'
    started = time.monotonic()
    with time_bound(10), pytest.raises(IrError, match=r"fuzz.mlir:1:21: error: .*string"):
        load_ir(line, "fuzz.mlir")
    assert time.monotonic() - started < 5
    with time_bound(10), pytest.raises(IrError, match="wider than 16777215 bits"):
        load_ir("%0 = dataflow.fill 1 : tensor<4xi6499999999999999999>", "fuzz.mlir")


# -- the PEF reader ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pef_bytes(mlp_pef: Path) -> bytes:
    data = mlp_pef.read_bytes()
    decode_pef(data)
    return data


@FUZZ
@given(changes=edits)
def test_mutated_pef_is_refused(pef_bytes: bytes, changes: list) -> None:
    """Checksums cover every byte: any change to a PEF is a PefError."""
    with time_bound(10):
        check_pef(mutate(pef_bytes, changes), original=pef_bytes)


@FUZZ
@given(section=st.integers(0, 3), changes=edits)
def test_mutated_payload_with_good_checksums_decodes_or_is_refused(
    pef_bytes: bytes, section: int, changes: list
) -> None:
    """Past the checksums (re-framed), the typed decoder and validate still refuse cleanly."""
    sections = split_sections(pef_bytes)
    payload = sections[section % len(sections)][1]
    with time_bound(10):
        check_pef(reframe(pef_bytes, section, mutate(payload, changes)))


def _leaves(node: object, path: tuple = ()) -> list[tuple]:
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(node, list):
        return [leaf for i, v in enumerate(node) for leaf in _leaves(v, (*path, i))]
    return [path]


VALUES = st.one_of(
    st.integers(-(1 << 63), (1 << 63) - 1),
    st.sampled_from([-1, 0, 1, 2, 3, 16, 1 << 31]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "f32", "i64", "i1", "pcu", "pmu", "dram", "add", "forward", None, True]),
    st.lists(st.integers(-2, 5), max_size=3),
)


@FUZZ
@given(
    section=st.integers(0, 3),
    picks=st.lists(st.tuples(st.integers(0, 1 << 20), VALUES), min_size=1, max_size=3),
)
def test_wrong_field_values_are_refused_by_schema_or_validate(
    pef_bytes: bytes, section: int, picks: list
) -> None:
    """Any field set to any value (a unit index out of range, a negative size, a wrong type):
    a PefError, or a program that passes every check."""
    sections = split_sections(pef_bytes)
    document = msgspec.msgpack.decode(sections[section % len(sections)][1])
    leaves = _leaves(document)
    for position, value in picks:
        *parents, last = leaves[position % len(leaves)]
        node = document
        for key in parents:
            node = node[key]
        node[last] = value
    with time_bound(10):
        check_pef(reframe(pef_bytes, section, msgspec.msgpack.encode(document)))


@FUZZ
@given(data=st.binary(max_size=300), with_magic=st.booleans())
def test_random_bytes_are_refused(data: bytes, with_magic: bool) -> None:
    with time_bound(10), pytest.raises(PefError):
        decode_pef((MAGIC if with_magic else b"") + data)


def test_fuzz_helpers_reach_the_decoder(pef_bytes: bytes) -> None:
    """The re-framing the fuzz tests rely on gives back a PEF that decodes (so their mutations
    reach the typed decoder and validate, not just the checksums)."""
    program = decode_pef(reframe(pef_bytes, 1, split_sections(pef_bytes)[1][1]))
    assert encode_pef(program) == pef_bytes


# -- an inference PEF with embedded weights (its last section) ------------------------------------


@pytest.fixture(scope="module")
def weights_pef_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The MLP example at ``--inference --precision bf16 --weights``: meta, forward, weights."""
    import argparse

    import torch
    from hardening_helpers import MLP, compile_model

    from tools.model_file import load_model_file

    out = tmp_path_factory.mktemp("hardening-weights")
    torch.manual_seed(1)
    module = load_model_file(MLP).call("model", argparse.Namespace(hidden=128, classes=10))
    torch.save(module.state_dict(), out / "mlp.pt")
    extra = ("--inference", "--precision", "bf16", "--weights", str(out / "mlp.pt"))
    data = compile_model(MLP, out, *extra, "--pef-name", "mlp-w").read_bytes()
    assert decode_pef(data).weights is not None
    assert [name for name, _ in split_sections(data)] == ["meta", "forward", "weights"]
    return data


@FUZZ
@given(changes=edits)
def test_mutated_pef_with_weights_is_refused(weights_pef_bytes: bytes, changes: list) -> None:
    with time_bound(10):
        check_pef(mutate(weights_pef_bytes, changes), original=weights_pef_bytes)


@FUZZ
@given(section=st.sampled_from([0, 2]), changes=edits)
def test_mutated_weights_or_meta_with_good_checksums_decode_or_are_refused(
    weights_pef_bytes: bytes, section: int, changes: list
) -> None:
    payload = split_sections(weights_pef_bytes)[section][1]
    with time_bound(10):
        check_pef(reframe(weights_pef_bytes, section, mutate(payload, changes)))


@FUZZ
@given(picks=st.lists(st.tuples(st.integers(0, 1 << 20), VALUES), min_size=1, max_size=3))
def test_wrong_weights_field_values_are_refused_by_schema_or_validate(
    weights_pef_bytes: bytes, picks: list
) -> None:
    """Any field of the weights section (a symbol index, a dtype, the data) set to any value."""
    document = msgspec.msgpack.decode(split_sections(weights_pef_bytes)[2][1])
    leaves = _leaves(document)
    for position, value in picks:
        *parents, last = leaves[position % len(leaves)]
        node = document
        for key in parents:
            node = node[key]
        node[last] = value
    with time_bound(10):
        check_pef(reframe(weights_pef_bytes, 2, msgspec.msgpack.encode(document)))
