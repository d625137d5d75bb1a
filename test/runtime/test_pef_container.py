"""The PEF container: round trip, and every refusal is a PefError naming where."""

from __future__ import annotations

import os
import random
import struct
import zlib

import msgspec
import pytest
from pefkit import ProgramBuilder, elementwise, matmul_program, st

from runtime.pef import PefError, decode_pef, encode_pef, read_pef, schema, write_pef
from runtime.pef.container import ENTRY_SIZE, HEADER_SIZE, MAGIC, VERSION, pack_sections
from runtime.pef.wire import encode_section, pack_section


def training_program():
    """Three sections and every kind of field, so that the bytes cover the whole schema."""
    p = ProgramBuilder()
    p.symbol("w", [4, 3], role="parameter")
    p.symbol("input.0", [2, 4])
    p.symbol("output.0", [2, 3], role="output")
    p.symbol("w.grad", [4, 3], role="gradient")
    p.symbol("lr", [], role="hyperparameter")
    fwd = p.section("forward")
    x, w = fwd.load("input.0"), fwd.load("w")
    y = fwd.pcu(
        "mm",
        [2, 3, 4],
        [(x, 0, [4, 0, 1]), (w, 0, [0, 1, 3])],
        [st("mul", 0, 1)],
        [2, 3],
        (0, [3, 1, 0]),
        combiner="add",
    )
    fwd.store("output.0", y)
    bwd = p.section("backward")
    w2 = bwd.load("w")
    bwd.store("w.grad", elementwise(bwd, "g", [4, 3], [(w2, [4, 3])], [st("const", imm=1.0)]))
    opt = p.section("optimizer")
    w3, g, lr = opt.load("w"), opt.load("w.grad"), opt.load("lr")
    new = elementwise(
        opt,
        "sgd",
        [4, 3],
        [(w3, [4, 3]), (g, [4, 3]), (lr, [])],
        [st("mul", 1, 2), st("sub", 0, 3)],
    )
    opt.store("w", new)
    return p.build(compile_flags=["--o1"], optimizer="sgd")


def refresh_header_crc(data: bytearray) -> bytearray:
    count = struct.unpack_from("<I", data, 12)[0]
    end = HEADER_SIZE + ENTRY_SIZE * count
    crc = zlib.crc32(bytes(data[HEADER_SIZE:end]), zlib.crc32(bytes(data[:16])))
    struct.pack_into("<I", data, 16, crc)
    return data


def test_round_trip() -> None:
    program = training_program()
    data = encode_pef(program)
    assert data[:8] == MAGIC
    assert decode_pef(data) == program
    inference = matmul_program(2, 3, 4)
    data = encode_pef(inference)
    assert struct.unpack_from("<H", data, 10)[0] & 1
    assert decode_pef(data) == inference


def test_write_and_read_atomically(tmp_path) -> None:
    program = training_program()
    path = tmp_path / "model.pef"
    write_pef(path, program)
    assert read_pef(path) == program
    write_pef(path, matmul_program(2, 2, 2))  # replaces in place
    assert read_pef(path) == matmul_program(2, 2, 2)
    assert sorted(os.listdir(tmp_path)) == ["model.pef"]  # no temp file left behind


def test_write_failure_leaves_the_old_file(tmp_path) -> None:
    path = tmp_path / "model.pef"
    write_pef(path, training_program())
    before = path.read_bytes()
    bad = msgspec.structs.replace(
        training_program(),
        sections=[msgspec.structs.replace(training_program().sections[0], inputs=[99])],
    )
    with pytest.raises(PefError):
        write_pef(path, bad)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.pef"]


def test_read_errors_name_the_path(tmp_path) -> None:
    with pytest.raises(PefError, match="missing.pef: cannot read"):
        read_pef(tmp_path / "missing.pef")
    (tmp_path / "junk.pef").write_bytes(b"hello world, not a pef at all")
    with pytest.raises(PefError, match=r"junk.pef: not a PEF: bad magic"):
        read_pef(tmp_path / "junk.pef")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty file"),
        (b"RDUPEF", "too short"),
        (b"\x7fELF" + bytes(40), "bad magic"),
        (b"\x7fELF", "bad magic"),
    ],
)
def test_refuses_empty_short_foreign(data: bytes, match: str) -> None:
    with pytest.raises(PefError, match=match):
        decode_pef(data)


def test_refuses_newer_version() -> None:
    data = bytearray(encode_pef(training_program()))
    assert struct.unpack_from("<H", data, 8)[0] == VERSION == 2
    struct.pack_into("<H", data, 8, 3)
    with pytest.raises(PefError, match="version 3 .* newer"):
        decode_pef(bytes(refresh_header_crc(data)))
    with pytest.raises(PefError, match="version 3 .* newer"):
        decode_pef(bytes(data))


def test_refuses_a_version_1_pef_asking_for_a_recompile() -> None:
    """Version 1 encoded every Struct as a map (field names in every unit): its payloads are
    not this schema's, and the PEF is refused in one line before any payload is read."""
    program = training_program()
    version_1 = [("meta", msgspec.msgpack.encode(msgspec.to_builtins(program.meta)))]
    data = pack_sections(version_1, version=1)
    with pytest.raises(
        PefError, match=r"^PEF format version 1 \(offset 8\) is older .*: recompile the model"
    ):
        decode_pef(data)


def test_payloads_are_arrays_not_maps() -> None:
    """Version 2's compaction: no field name is written anywhere in a payload."""
    program = training_program()
    data = encode_pef(program)
    for name in ("offset", "strides", "stages", "combiner", "hops", "tile_bytes", "symbols"):
        assert name.encode() not in data
    region = _regions(data)["forward"]
    forward = msgspec.msgpack.decode(data[region.start : region.stop])
    assert isinstance(forward, list) and len(forward) == len(schema.Section.__struct_fields__)


def test_refuses_unknown_flags_and_flag_meta_mismatch() -> None:
    data = bytearray(encode_pef(training_program()))
    struct.pack_into("<H", data, 10, 8)
    with pytest.raises(PefError, match="unknown flags 0x0008"):
        decode_pef(bytes(refresh_header_crc(data)))
    struct.pack_into("<H", data, 10, 4)  # co-resident, but no "resident" section follows
    with pytest.raises(PefError, match="co-resident but section 'optimizer' is not 'resident'"):
        decode_pef(bytes(refresh_header_crc(data)))
    struct.pack_into("<H", data, 10, 1)
    with pytest.raises(PefError, match="flags .* say inference but section 'meta' says training"):
        decode_pef(bytes(refresh_header_crc(data)))


def test_refuses_truncation_anywhere() -> None:
    data = encode_pef(training_program())
    cuts = sorted({1, 7, 8, 15, 19, 20, 21, 40, 59, 60, 100, len(data) // 2, len(data) - 1})
    cuts += list(range(0, len(data), 7))
    for cut in cuts:
        with pytest.raises(PefError):
            decode_pef(data[:cut])
    with pytest.raises(PefError, match="truncated"):
        decode_pef(data[: HEADER_SIZE + 10])
    with pytest.raises(PefError, match="truncated: section 'optimizer'"):
        decode_pef(data[:-1])


def test_refuses_trailing_bytes() -> None:
    with pytest.raises(PefError, match="trailing bytes"):
        decode_pef(encode_pef(training_program()) + b"\0")


def _regions(data: bytes) -> dict[str, range]:
    count = struct.unpack_from("<I", data, 12)[0]
    regions = {"header": range(0, HEADER_SIZE)}
    regions["table"] = range(HEADER_SIZE, HEADER_SIZE + ENTRY_SIZE * count)
    for i in range(count):
        raw, offset, size, _ = struct.unpack_from("<24sQII", data, HEADER_SIZE + ENTRY_SIZE * i)
        regions[raw.rstrip(b"\0").decode()] = range(offset, offset + size)
    return regions


def test_a_flipped_byte_anywhere_is_refused_naming_the_region() -> None:
    data = encode_pef(training_program())
    regions = _regions(data)
    assert set(regions) == {"header", "table", "meta", "forward", "backward", "optimizer"}
    assert sum(len(r) for r in regions.values()) == len(data)
    for name, region in regions.items():
        for position in region:
            for mask in (0x01, 0x80):
                corrupted = bytearray(data)
                corrupted[position] ^= mask
                with pytest.raises(PefError) as info:
                    decode_pef(bytes(corrupted))
                if name not in ("header", "table"):
                    assert f"section '{name}': checksum mismatch" in str(info.value)


def test_checksum_mismatch_names_the_section() -> None:
    data = bytearray(encode_pef(training_program()))
    region = _regions(bytes(data))["backward"]
    data[region.start + 3] ^= 0xFF
    with pytest.raises(
        PefError, match=r"section 'backward': checksum mismatch \(payload at offset"
    ):
        decode_pef(bytes(data))


def test_schema_errors_name_the_section_and_path() -> None:
    program = training_program()
    meta = msgspec.msgpack.encode(program.meta)
    section = msgspec.to_builtins(pack_section(program.sections[0]))
    section[5][0][5] = "sixteen"  # pcus[0].lanes
    payloads = [("meta", meta), ("forward", msgspec.msgpack.encode(section))]
    with pytest.raises(
        PefError,
        match=r"section 'forward': invalid payload: Expected `int`, got "
        r"`str` - at `\$.pcus\[0\].lanes`",
    ):
        decode_pef(pack_sections(payloads))
    del section[5:]
    payloads = [("meta", meta), ("forward", msgspec.msgpack.encode(section))]
    with pytest.raises(
        PefError,
        match=r"section 'forward': invalid payload: Expected `array` of at least length 7, got 5$",
    ):
        decode_pef(pack_sections(payloads))
    with pytest.raises(PefError, match="section 'meta': malformed payload"):
        decode_pef(pack_sections([("meta", b"\xc1")]))
    payloads = [("meta", meta), ("other", encode_section(program.sections[0]))]
    with pytest.raises(PefError, match="section 'other': payload is named 'forward'"):
        decode_pef(pack_sections(payloads))
    with pytest.raises(PefError, match="entry 0 .* is 'forward', expected 'meta'"):
        decode_pef(pack_sections([("forward", encode_section(program.sections[0]))]))


def test_garbage_payloads_with_valid_checksums_are_refused_cleanly() -> None:
    """Mutated msgpack (re-checksummed) decodes, or is a PefError: never another exception."""
    program = training_program()
    originals = [("meta", msgspec.msgpack.encode(program.meta))] + [
        (s.name, encode_section(s)) for s in program.sections
    ]
    rng = random.Random(1)
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(1500):
        payloads = list(originals)
        i = rng.randrange(len(payloads))
        name, body = payloads[i]
        body = bytearray(body)
        for _ in range(rng.randint(1, 3)):
            action = rng.random()
            pos = rng.randrange(len(body))
            if action < 0.6:
                body[pos] = rng.randrange(256)
            elif action < 0.8:
                del body[pos]
            else:
                body.insert(pos, rng.randrange(256))
        payloads[i] = (name, bytes(body))
        try:
            decode_pef(pack_sections(payloads))
            outcomes["ok"] += 1
        except PefError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 1000


def test_refuses_zero_sections_and_duplicate_sections() -> None:
    with pytest.raises(PefError, match="section count .* is 0"):
        decode_pef(pack_sections([]))
    program = training_program()
    meta = msgspec.msgpack.encode(program.meta)
    fwd = encode_section(program.sections[0])
    with pytest.raises(PefError, match="section 'forward' appears twice"):
        decode_pef(pack_sections([("meta", meta), ("forward", fwd), ("forward", fwd)]))


def test_written_files_get_the_usual_mode(tmp_path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    path = tmp_path / "model.pef"
    write_pef(path, training_program())
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
