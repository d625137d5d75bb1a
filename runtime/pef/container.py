"""The PEF container: header, section table, checksummed msgpack payloads.

Layout (little endian, see docs/design.md)::

    0   8  magic  b"RDUPEF\\0\\1"
    8   2  format version (u16, currently 2; 1: payload Structs as msgpack maps, refused)
    10  2  flags (u16; bit 0: inference; bit 1: the last section is "weights"; bit 2: a
           section "resident" follows the program's sections, before "weights")
    12  4  section count N (u32)
    16  4  crc32 of bytes [0, 16) and the section table
    20  N * 40 section table: name (24 bytes ascii, zero padded), offset u64, size u32, crc32 u32
    ..  payloads, in table order, back to back to the end of the file; "meta" first

Every byte of a PEF is covered by a checksum: the header and table by the header crc, each payload
by its own, and the payloads must tile the rest of the file exactly (no gaps, no trailing bytes).
An inference PEF compiled with weights (``rdu-compile --weights``) sets flag bit 1 and ends with
a section named ``weights`` (``schema.Weights``); without the flag no section has that name.
A PEF that keeps symbols on chip (``schema.Residency``: its sections co-resident, or loaded in
turn around pinned homes) sets flag bit 2 and has a section named ``resident`` after its
program sections; without the flag no section has that name. (The
flag is new in format 2 without a version change: a PEF without it is byte for byte what it
was, and a runtime that does not know the flag refuses the PEF as having unknown flags.)
Decoding is typed (msgspec against ``schema``), so loading a PEF never runs code from it, and is
followed by ``validate``. Every refusal is a ``PefError``.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import TypeVar

import msgspec

from runtime.machine.atomic import atomic_write_bytes
from runtime.machine.files import not_a_regular_file
from runtime.pef import schema
from runtime.pef.validate import PefError, validate
from runtime.pef.wire import PackedSection, encode_section, unpack_section

MAGIC = b"RDUPEF\0\1"
VERSION = 2
"""The format version this runtime reads and writes. Version 2 encodes every payload Struct as
a msgpack array of its field values (``schema.Payload``); version 1 encoded them as maps, each
field's name repeated in every unit, port and route (a third of the bytes). A version-1 PEF is
refused with "recompile": PEFs are build products of their model.py, and reading both would
keep a second schema alive for files that one ``rdu-compile`` replaces."""
FLAG_INFERENCE = 0x1
FLAG_WEIGHTS = 0x2
FLAG_RESIDENT = 0x4
KNOWN_FLAGS = FLAG_INFERENCE | FLAG_WEIGHTS | FLAG_RESIDENT
RESIDENT = "resident"
"""The name of the co-residency section (``schema.Residency``), after the program sections."""
WEIGHTS = "weights"
"""The name of the embedded weights' section (``schema.Weights``), last in the table."""

_HEADER = struct.Struct("<8sHHII")
_ENTRY = struct.Struct("<24sQII")
HEADER_SIZE = _HEADER.size  # 20
ENTRY_SIZE = _ENTRY.size  # 40
NAME_SIZE = 24
_MAX_U32 = 0xFFFFFFFF

T = TypeVar("T")

_encoder = msgspec.msgpack.Encoder()
_meta_decoder = msgspec.msgpack.Decoder(schema.Meta)
_section_decoder = msgspec.msgpack.Decoder(PackedSection)
_weights_decoder = msgspec.msgpack.Decoder(schema.Weights)
_resident_decoder = msgspec.msgpack.Decoder(schema.Residency)


def encode_pef(program: schema.Program, *, check: bool = True) -> bytes:
    """The PEF bytes of ``program`` (validated first unless ``check`` is False)."""
    if check:
        validate(program)
    payloads = [("meta", _encoder.encode(program.meta))]
    payloads += [(s.name, encode_section(s)) for s in program.sections]
    flags = FLAG_INFERENCE if program.meta.inference else 0
    if program.resident is not None:
        payloads.append((RESIDENT, _encoder.encode(program.resident)))
        flags |= FLAG_RESIDENT
    if program.weights is not None:
        payloads.append((WEIGHTS, _encoder.encode(program.weights)))
        flags |= FLAG_WEIGHTS
    return pack_sections(payloads, flags=flags)


def pack_sections(
    payloads: list[tuple[str, bytes]], *, flags: int = 0, version: int = VERSION
) -> bytes:
    """Frame already-encoded payloads into a container (the raw layer under ``encode_pef``)."""
    table_end = HEADER_SIZE + ENTRY_SIZE * len(payloads)
    table = bytearray()
    offset = table_end
    for name, data in payloads:
        raw = name.encode("ascii", errors="replace")
        if not raw or len(raw) > NAME_SIZE or b"\0" in raw or not name.isascii():
            raise PefError(f"section name {name!r} is not 1..{NAME_SIZE} ascii characters")
        if len(data) > _MAX_U32:
            raise PefError(f"section '{name}' is {len(data)} bytes, more than a u32 size holds")
        table += _ENTRY.pack(raw, offset, len(data), zlib.crc32(data))
        offset += len(data)
    head = _HEADER.pack(MAGIC, version, flags, len(payloads), 0)[:16]
    crc = zlib.crc32(table, zlib.crc32(head))
    return b"".join([head, struct.pack("<I", crc), bytes(table), *(d for _, d in payloads)])


def decode_pef(data: bytes) -> schema.Program:
    """Decode and validate a PEF; raise ``PefError`` naming what is wrong and where."""
    data = bytes(data)
    if not data:
        raise PefError("empty file: not a PEF")
    if data[: len(MAGIC)] != MAGIC[: len(data)]:
        raise PefError(
            f"not a PEF: bad magic {data[: len(MAGIC)]!r} at offset 0 (expected {MAGIC!r})"
        )
    if len(data) < HEADER_SIZE:
        raise PefError(f"file is {len(data)} bytes, too short for the {HEADER_SIZE}-byte header")
    _, version, flags, count, header_crc = _HEADER.unpack_from(data)
    if version > VERSION:
        raise PefError(
            f"PEF format version {version} (offset 8) is newer than this runtime reads "
            f"(version {VERSION}): update the runtime"
        )
    if version == 1:
        raise PefError(
            f"PEF format version 1 (offset 8) is older than this runtime reads (version "
            f"{VERSION}): recompile the model with rdu-compile"
        )
    if version < 1:
        raise PefError(f"unknown PEF format version {version} at offset 8")
    if count == 0:
        raise PefError("section count (offset 12) is 0: a PEF has at least the meta section")
    table_end = HEADER_SIZE + ENTRY_SIZE * count
    if len(data) < table_end:
        raise PefError(
            f"truncated: the section table of {count} entries ends at offset {table_end}, "
            f"the file is {len(data)} bytes"
        )
    if zlib.crc32(data[HEADER_SIZE:table_end], zlib.crc32(data[:16])) != header_crc:
        raise PefError(
            "header checksum mismatch: the header or section table (offsets 0.."
            f"{table_end - 1}) is corrupted"
        )
    if flags & ~KNOWN_FLAGS:
        raise PefError(f"unknown flags 0x{flags:04x} at offset 10")

    entries = _read_table(data, count, table_end)
    has_weights = bool(flags & FLAG_WEIGHTS)
    names = [name for name, *_ in entries]
    if has_weights and (count < 2 or names[-1] != WEIGHTS):
        raise PefError(
            f"flags (offset 10) say the PEF has weights but its last section is '{names[-1]}', "
            f"not '{WEIGHTS}'"
        )
    if WEIGHTS in names[: count - 1 if has_weights else count]:
        where = "before the last section" if has_weights else "without the weights flag"
        raise PefError(f"section '{WEIGHTS}' appears {where} (flags at offset 10)")
    has_resident = bool(flags & FLAG_RESIDENT)
    at = count - 1 - (1 if has_weights else 0)  # the resident section's index, if any
    if has_resident and (at < 1 or names[at] != RESIDENT):
        raise PefError(
            f"flags (offset 10) say the sections are co-resident but section '{names[at]}' is "
            f"not '{RESIDENT}' (it follows the program's sections)"
        )
    if RESIDENT in names and not has_resident:
        raise PefError(f"section '{RESIDENT}' appears without the resident flag (offset 10)")
    meta: schema.Meta | None = None
    sections: list[schema.Section] = []
    weights: schema.Weights | None = None
    resident: schema.Residency | None = None
    for index, (name, offset, size, crc) in enumerate(entries):
        payload = data[offset : offset + size]
        if zlib.crc32(payload) != crc:
            raise PefError(
                f"section '{name}': checksum mismatch (payload at offset {offset}, {size} bytes)"
            )
        if index == 0:
            meta = _decode_payload(_meta_decoder, name, payload)
            continue
        if has_weights and index == count - 1:
            weights = _decode_payload(_weights_decoder, name, payload)
            continue
        if has_resident and index == at:
            resident = _decode_payload(_resident_decoder, name, payload)
            continue
        section = unpack_section(_decode_payload(_section_decoder, name, payload))
        if section.name != name:
            raise PefError(f"section '{name}': payload is named '{section.name}'")
        sections.append(section)
    assert meta is not None
    if meta.inference != bool(flags & FLAG_INFERENCE):
        raise PefError(
            f"flags (offset 10) say {'inference' if flags & FLAG_INFERENCE else 'training'} "
            f"but section 'meta' says {'inference' if meta.inference else 'training'}"
        )
    program = schema.Program(meta=meta, sections=sections, weights=weights, resident=resident)
    validate(program)
    return program


def _read_table(data: bytes, count: int, table_end: int) -> list[tuple[str, int, int, int]]:
    """The section table's entries, checked to tile ``data`` after the table exactly."""
    entries: list[tuple[str, int, int, int]] = []
    names: set[str] = set()
    expected = table_end
    for i in range(count):
        at = HEADER_SIZE + ENTRY_SIZE * i
        raw, offset, size, crc = _ENTRY.unpack_from(data, at)
        name = _entry_name(raw, i, at)
        if i == 0 and name != "meta":
            raise PefError(f"section table entry 0 (offset {at}) is '{name}', expected 'meta'")
        if name in names:
            raise PefError(f"section '{name}' appears twice in the section table")
        names.add(name)
        if offset != expected:
            raise PefError(
                f"section '{name}': payload offset {offset} (table offset {at + 24}), "
                f"expected {expected} (payloads follow the table back to back)"
            )
        if offset + size > len(data):
            raise PefError(
                f"truncated: section '{name}' spans offsets {offset}..{offset + size - 1}, "
                f"the file is {len(data)} bytes"
            )
        expected = offset + size
        entries.append((name, offset, size, crc))
    if expected != len(data):
        raise PefError(
            f"{len(data) - expected} unexpected trailing bytes at offset {expected}, after the "
            "last section"
        )
    return entries


def _entry_name(raw: bytes, index: int, at: int) -> str:
    stripped = raw.rstrip(b"\0")
    if not stripped or b"\0" in stripped or not stripped.isascii():
        raise PefError(f"section table entry {index} (offset {at}): bad name {raw!r}")
    return stripped.decode("ascii")


def _decode_payload(decoder: msgspec.msgpack.Decoder[T], name: str, payload: bytes) -> T:
    try:
        return decoder.decode(payload)
    except msgspec.ValidationError as exc:
        message = schema.named_path(_one_line(exc), decoder.type)
        raise PefError(f"section '{name}': invalid payload: {message}") from None
    except Exception as exc:  # msgspec.DecodeError, and e.g. UnicodeDecodeError on bad strings
        raise PefError(f"section '{name}': malformed payload: {_one_line(exc)}") from None


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def write_pef(path: str | os.PathLike[str], program: schema.Program) -> None:
    """Encode ``program`` and write it to ``path`` atomically (temp file, fsync, rename)."""
    atomic_write_bytes(path, encode_pef(program))


def read_pef(path: str | os.PathLike[str]) -> schema.Program:
    """Read and decode the PEF at ``path``; errors are ``PefError`` starting with the path."""
    problem = not_a_regular_file(path)
    if problem:
        raise PefError(f"{os.fspath(path)}: {problem}")
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise PefError(f"{os.fspath(path)}: cannot read: {exc.strerror or exc}") from None
    try:
        return decode_pef(data)
    except PefError as exc:
        raise PefError(f"{os.fspath(path)}: {exc}") from None
