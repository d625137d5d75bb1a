"""A bad PEF is refused in one line naming what is wrong and where, before any unit runs.

The container and validate are tested on hand-built programs in test/runtime; here the subject
is the real compiled MLP and the commands users run on it (rdu-pef, rdu-run).
"""

from __future__ import annotations

import struct
from pathlib import Path

import msgspec
import pytest
from fuzzing import reframe, split_sections
from hardening_helpers import MLP, one_line_error, tool, tools

from runtime.pef import PefError, decode_pef
from runtime.pef.container import ENTRY_SIZE, HEADER_SIZE


@pytest.fixture(scope="module")
def good(mlp_pef: Path) -> bytes:
    return mlp_pef.read_bytes()


def boundaries(data: bytes) -> list[int]:
    """Every offset where one part of the container ends and the next begins."""
    count = struct.unpack_from("<I", data, 12)[0]
    cuts = [0, 8, 10, 12, 16, HEADER_SIZE]
    cuts += [HEADER_SIZE + ENTRY_SIZE * i for i in range(1, count + 1)]
    for i in range(count):
        _, offset, size, _ = struct.unpack_from("<24sQII", data, HEADER_SIZE + ENTRY_SIZE * i)
        cuts.append(offset + size)
    return sorted(set(cuts) - {len(data)})


def test_truncated_at_every_section_boundary_is_refused(good: bytes) -> None:
    cuts = boundaries(good)
    assert len(cuts) >= 6 + 4  # header fields, table entries and payloads all counted
    for cut in cuts:
        with pytest.raises(PefError) as info:
            decode_pef(good[:cut])
        message = str(info.value)
        assert "\n" not in message
        if cut == 0:
            assert message == "empty file: not a PEF"
        elif cut > HEADER_SIZE:
            assert "truncated" in message, (cut, message)


def test_one_flipped_byte_anywhere_is_refused(good: bytes) -> None:
    """Every byte of the header and table, both ends of every part, and every 7th byte between
    (test/runtime flips every byte of a smaller PEF)."""
    positions = set(range(HEADER_SIZE + ENTRY_SIZE * struct.unpack_from("<I", good, 12)[0]))
    positions |= set(boundaries(good)) | {cut - 1 for cut in boundaries(good) if cut}
    positions |= set(range(0, len(good), 7)) | {len(good) - 1}
    for position in sorted(positions):
        corrupted = bytearray(good)
        corrupted[position] ^= 0x10
        with pytest.raises(PefError, match="checksum|magic|version|flags|count|offset|truncated"):
            decode_pef(bytes(corrupted))


def _edit(good: bytes, section: int, change) -> bytes:  # noqa: ANN001
    document = msgspec.msgpack.decode(split_sections(good)[section][1])
    change(document)
    return reframe(good, section, msgspec.msgpack.encode(document))


def _route_to_nowhere(section: list) -> None:
    section[6][0][2:4] = [0, 999]  # routes[0] goes to pcu 999 (dst_kind, dst: runtime/pef/wire.py)


def _negative_dim(meta: list) -> None:
    meta[2][0][1] = [-1, *meta[2][0][1][1:]]  # symbols[0].shape


def _bad_cases(good: bytes) -> dict[str, tuple[bytes, str]]:
    newer = bytearray(good)
    struct.pack_into("<H", newer, 8, 99)
    return {
        "empty": (b"", "empty file: not a PEF"),
        "wrong-magic": (b"\x7fELF" + good[4:], "not a PEF: bad magic"),
        "newer-version": (bytes(newer), "PEF format version 99 (offset 8) is newer than this"),
        "truncated": (good[: HEADER_SIZE + ENTRY_SIZE + 7], "truncated: the section table"),
        "flipped-byte": (
            good[:-100] + bytes([good[-100] ^ 1]) + good[-99:],
            "checksum mismatch (payload at offset",
        ),
        "route-to-nowhere": (
            _edit(good, 1, _route_to_nowhere),
            "section 'forward': route 0 (",
        ),
        "negative-dim": (_edit(good, 0, _negative_dim), "has negative dim 0: [-1,"),
    }


def test_the_commands_refuse_in_one_line(tmp_path: Path, good: bytes) -> None:
    cases = _bad_cases(good)
    assert "out of range" in str(pytest.raises(PefError, decode_pef, cases["route-to-nowhere"][0]))
    commands = []
    for name, (data, _) in cases.items():
        path = tmp_path / f"{name}.pef"
        path.write_bytes(data)
        commands.append(("rdu-pef", str(path)))
    for name in ("negative-dim", "route-to-nowhere", "flipped-byte"):
        commands.append(("rdu-run", str(MLP), "--pef", str(tmp_path / f"{name}.pef"), "--test"))
    results = tools(*commands)
    expected = [*cases, "negative-dim", "route-to-nowhere", "flipped-byte"]
    for (command, *_), name, result in zip(commands, expected, results, strict=True):
        error = one_line_error(result)
        assert error.startswith(f"{command}: error: {tmp_path / name}.pef: "), error
        assert cases[name][1] in error, error
        assert result.stdout == ""  # refused before anything ran or printed


def test_a_directory_or_missing_pef_is_one_line(tmp_path: Path) -> None:
    assert "is a directory, not a file" in one_line_error(tool("rdu-pef", str(tmp_path)))
    assert "cannot read" in one_line_error(tool("rdu-pef", str(tmp_path / "none.pef")))
