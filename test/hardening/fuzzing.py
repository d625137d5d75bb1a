"""What the fuzz tests (hypothesis, bounded) and the atheris entry point share: seed inputs,
mutations, and the property checks ("our own error type, nothing else, in bounded time")."""

from __future__ import annotations

import contextlib
import re
import signal
import struct
from collections.abc import Iterator
from pathlib import Path

from runtime.pef import PefError, decode_pef
from runtime.pef.container import ENTRY_SIZE, HEADER_SIZE, pack_sections

ROOT = Path(__file__).resolve().parents[2]

IR_TOKENS = [
    "%0", "%1", "{", "}", "(", ")", ":", ",", "=", "->", "<", ">", "[", "]", "\"", "x", "-1",
    "0x", "1e999", "99999999999999999999999", "i99999999999", "f32", "i64", "i1", "tensor<",
    "memref<", "dense<", "array<i64: ", "loc(", "^bb0", "@", "#", "!", "//", "\n", "// -----",
    "dataflow.", "pcu.", "pmu.", "rdu_tile.", "builtin.module", "\"forward", "\\", "\0", "\xff",
]  # fmt: skip
"""Fragments that reach deep into the MLIR lexer and parser when spliced into valid IR."""


def ir_seeds() -> list[str]:
    """Every chunk of every lit test (valid and invalid IR of all our dialects)."""
    chunks: list[str] = []
    for path in sorted((ROOT / "test").rglob("*.mlir")):
        text = path.read_text()
        chunks += [c for c in text.split("// -----") if "builtin.module" in c or "%" in c]
    return chunks


def mutate(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    """Apply ``(kind, position, payload)`` edits: 0 overwrite, 1 delete, 2 insert, 3 truncate.

    Positions wrap around the current length so that any integer is a valid edit."""
    out = bytearray(data)
    for kind, position, payload in edits:
        at = position % (len(out) + 1)
        if kind == 0 and out:
            at = min(at, len(out) - 1)
            out[at : at + len(payload)] = payload[: len(out) - at] or b"\0"
        elif kind == 1:
            del out[at : at + max(1, len(payload))]
        elif kind == 2:
            out[at:at] = payload
        elif kind == 3:
            del out[at:]
    return bytes(out)


def split_sections(data: bytes) -> list[tuple[str, bytes]]:
    """The ``(name, payload)`` sections of a valid PEF (to mutate a payload and re-frame it)."""
    count = struct.unpack_from("<I", data, 12)[0]
    sections = []
    for i in range(count):
        raw, offset, size, _ = struct.unpack_from("<24sQII", data, HEADER_SIZE + ENTRY_SIZE * i)
        sections.append((raw.rstrip(b"\0").decode("ascii"), data[offset : offset + size]))
    return sections


def reframe(data: bytes, index: int, payload: bytes) -> bytes:
    """``data`` with section ``index``'s payload replaced, checksums made right again."""
    sections = split_sections(data)
    name, _ = sections[index % len(sections)]
    sections[index % len(sections)] = (name, payload)
    flags = struct.unpack_from("<H", data, 10)[0]
    return pack_sections(sections, flags=flags)


class Hang(Exception):
    """An input that took longer than the fuzz target's time bound."""


@contextlib.contextmanager
def time_bound(seconds: int) -> Iterator[None]:
    """Raise ``Hang`` if the body runs longer than ``seconds`` (SIGALRM: main thread only)."""

    def expire(signum: int, frame: object) -> None:
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def check_pef(data: bytes, original: bytes | None = None) -> None:
    """Decoding ``data`` gives a program or a one-line PefError; nothing else.

    With ``original`` (a valid PEF whose checksums ``data`` did not refresh), any change at all
    must be refused: every byte of a PEF is under a checksum."""
    try:
        decode_pef(data)
    except PefError as error:
        assert "\n" not in str(error) and str(error), repr(error)
        return
    assert original is None or data == original, "a changed PEF was accepted"


IR_ERROR = re.compile(r"^\S.*: error: \S")


def check_ir(data: bytes | str) -> None:
    """rdu-opt's parser front gives a module or a one-line, located IrError; nothing else."""
    from tools.rdu_opt import IrError, load_ir

    try:
        load_ir(data, "fuzz.mlir")
    except IrError as error:
        text = str(error)
        assert "\n" not in text and IR_ERROR.match(text), text
