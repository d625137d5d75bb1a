"""Target files: a custom fabric described in TOML, checked field by field when it is read.

The compiler (``rdu-compile --arch FILE.toml``) and the runtime (``rdu-run --arch FILE.toml``)
read target files here, so both accept exactly the same files. The keys are the fields of
``schema.Target`` (what a PEF records about its target)::

    name = "my-fabric"            # optional: the file's stem by default
    cols = 8                      # unit slots across (PCUs and PMUs in a checkerboard)
    rows = 4                      # unit slots down
    pcu_lanes = 16                # SIMD lanes of a PCU (32-bit words)
    pcu_stages = 6                # pipeline stages of a PCU
    pmu_bytes = 262144            # bytes of one PMU
    pmu_banks = 16                # banks of one PMU
    clock_ghz = 1.0
    link_capacity = 4             # streams one switch-to-switch link carries at once
    dram_gbps = 51.2              # off-chip bandwidth, GB/s
    stream_bytes_per_cycle = 64   # bytes one stream moves over a link in a cycle
    dram_latency_ns = 100         # optional: from a DRAM request to its first bytes
    config_latency_ns = 500       # optional: loading a section, beyond reading its bytes
    pcu_bf16_lanes = 32           # optional: bf16 multiply-adds a PCU stage does a cycle
    scalar_link_capacity = 4      # optional: PMUs' scalars one scalar-network link carries

Every key but ``name``, ``dram_latency_ns`` and ``config_latency_ns`` (0 when absent: not
modelled), ``pcu_bf16_lanes`` (0 when absent: bf16 at the f32 rate) and
``scalar_link_capacity`` (0 when absent: no scalar network, scalars ride the vector links) is
required. A key that
is not a field, a value of the wrong type (an integer field given ``16.0`` or ``"16"``) or out
of range (``pcu_lanes = -4``, or above ``UPPER_BOUNDS``, or more than ``MAX_SLOTS`` slots) is
refused with a one-line ``TargetFileError`` naming the file and the field.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import msgspec
import msgspec.structs

from runtime.errors import RduError
from runtime.machine.files import not_a_regular_file
from runtime.pef.schema import Target, named_path

FIELDS: tuple[str, ...] = Target.__struct_fields__
"""Every key a target file may hold."""

OPTIONAL: tuple[str, ...] = (
    "name",
    "dram_latency_ns",
    "config_latency_ns",
    "pcu_bf16_lanes",
    "scalar_link_capacity",
)
"""The keys a target file may leave out (``name``: the file's stem; the latencies: 0, not
modelled; ``pcu_bf16_lanes``: 0, bf16 at the f32 rate; ``scalar_link_capacity``: 0, no scalar
network)."""

REQUIRED: tuple[str, ...] = tuple(f for f in FIELDS if f not in OPTIONAL)
"""The keys a target file must hold."""

_AT_FIELD = re.compile(r"^(?P<msg>.*?) - at `\$\.(?P<field>\w+)`")


class TargetFileError(RduError):
    """A target file that cannot be read or does not describe a fabric (one line, names the
    file and the field)."""


def looks_like_target_file(arch: str) -> bool:
    """Whether ``--arch`` names a file (``.toml`` or a path) rather than a preset."""
    return arch.endswith(".toml") or "/" in arch or Path(arch).is_file()


UPPER_BOUNDS: dict[str, int | float] = {
    "cols": 1024,
    "rows": 1024,
    "pcu_lanes": 1024,
    "pcu_stages": 256,
    "pmu_bytes": 2**30,
    "pmu_banks": 1024,
    "clock_ghz": 100.0,
    "link_capacity": 1024,
    "dram_gbps": 1_000_000.0,
    "stream_bytes_per_cycle": 65536,
    "dram_latency_ns": 1_000_000.0,
    "config_latency_ns": 1_000_000.0,
    "pcu_bf16_lanes": 4096,
    "scalar_link_capacity": 1024,
}
"""The largest value of each field a target file may give: the largest preset's figure (sn30's
64 x 40 grid, 16 lanes x 6 stages, 512 KiB PMUs in 16 banks, 1.6 GHz, 8 streams a link, 1.6 TB/s,
64 bytes a stream a cycle) times a generous factor (16 to 2048), so that any fabric one may want
to model fits, while a typo (``cols = 100000000000``) is refused at once instead of making the
compiler allocate the grid (a 1e20-column grid was killed for memory)."""

MAX_SLOTS = 65536
"""At most this many unit slots (``cols x rows``): 25 times sn30's 2,560. The placer and the
pictures walk every slot; a 1000 x 1000 grid took a minute to place the MLP."""


def check_target(target: Target, where: str) -> None:
    """Every figure of ``target`` in range, else a ``TargetFileError`` naming ``where`` and the
    field."""
    positive_ints = (
        "cols",
        "rows",
        "pcu_lanes",
        "pcu_stages",
        "pmu_bytes",
        "pmu_banks",
        "link_capacity",
        "stream_bytes_per_cycle",
    )
    for field in positive_ints:
        value = getattr(target, field)
        if value < 1:
            raise TargetFileError(f"{where}: field '{field}' is {value}, must be >= 1")
    for field in ("dram_latency_ns", "config_latency_ns", "pcu_bf16_lanes", "scalar_link_capacity"):
        value = getattr(target, field)
        if not value >= 0:
            raise TargetFileError(f"{where}: field '{field}' is {value}, must be >= 0")
    for field in ("clock_ghz", "dram_gbps"):
        value = getattr(target, field)
        if not value > 0 or value == float("inf"):
            raise TargetFileError(f"{where}: field '{field}' is {value}, must be > 0 and finite")
    for field, bound in UPPER_BOUNDS.items():
        value = getattr(target, field)
        if value > bound:
            raise TargetFileError(
                f"{where}: field '{field}' is {value}, must be <= {bound} (the largest preset's "
                "figure times a generous factor)"
            )
    if target.cols * target.rows < 2:
        raise TargetFileError(
            f"{where}: fields 'cols' x 'rows' is {target.cols}x{target.rows}, must hold at least "
            "one PCU and one PMU"
        )
    if target.cols * target.rows > MAX_SLOTS:
        raise TargetFileError(
            f"{where}: fields 'cols' x 'rows' is {target.cols}x{target.rows} = "
            f"{target.cols * target.rows} slots, must be <= {MAX_SLOTS} (25 times sn30's)"
        )
    if not target.name:
        raise TargetFileError(f"{where}: field 'name' is empty")


def read_target_file(path: str | Path) -> Target:
    """The target described by the TOML file at ``path`` (see the module docstring)."""
    path = Path(path)
    where = f"target file {path}"
    problem = not_a_regular_file(path)
    if problem:
        raise TargetFileError(f"{where}: {problem}")
    try:
        data = tomllib.loads(path.read_text())
    except OSError as err:
        raise TargetFileError(f"{where}: cannot read it ({err.strerror or err})") from None
    except UnicodeDecodeError:
        raise TargetFileError(f"{where}: not a text file") from None
    except tomllib.TOMLDecodeError as err:
        raise TargetFileError(f"{where}: not valid TOML ({err})") from None
    for key in data:
        if key not in FIELDS:
            raise TargetFileError(
                f"{where}: unknown field '{key}' (the fields are: {', '.join(FIELDS)})"
            )
    for key in REQUIRED:
        if key not in data:
            raise TargetFileError(f"{where}: missing field '{key}'")
    data.setdefault("name", path.stem)
    for key, value in data.items():
        # TOML has booleans and msgspec would not take one for an int; say so by name.
        if isinstance(value, bool):
            raise TargetFileError(f"{where}: field '{key}' is a boolean, expected a number")
    # ``Target`` is an array of its fields in a PEF (``schema.Payload``): convert the table to
    # one, in the fields' order, the defaults where the file leaves a field out.
    fields = msgspec.structs.fields(Target)
    values = [data[f.name] if f.name in data else f.default for f in fields]
    try:
        target = msgspec.convert(values, Target)
    except msgspec.ValidationError as err:
        match = _AT_FIELD.match(named_path(str(err), Target))
        if match is None:
            raise TargetFileError(f"{where}: {err}") from None
        message = match["msg"].replace("`", "")
        raise TargetFileError(f"{where}: field '{match['field']}': {message.lower()}") from None
    check_target(target, where)
    return target


class TargetMismatchError(RduError):
    """A PEF asked to run on a fabric other than the one it was compiled for."""


def check_same_target(recorded: Target, arch: str, pef: str) -> None:
    """Refuse to run ``pef`` (compiled for ``recorded``) on the fabric ``arch``: a preset name or
    a target file. Both are compared figure by figure (``runtime/machine/targets.py`` for a
    preset), not by name: a target file called ``sn10.toml`` records the name ``sn10``."""
    from runtime.machine.targets import PRESETS

    if not looks_like_target_file(arch):
        if arch != recorded.name:
            raise TargetMismatchError(
                f"{pef} was compiled for target '{recorded.name}', not '{arch}': recompile it "
                f"with rdu-compile --arch {arch}"
            )
        if arch not in PRESETS:
            raise TargetMismatchError(
                f"--arch {arch}: no such preset (choose from {', '.join(sorted(PRESETS))}, or "
                "give the target file FILE.toml)"
            )
        wanted, where = PRESETS[arch].to_pef(), "the preset"
    else:
        wanted, where = read_target_file(arch), "the file"
    for field in FIELDS:
        have, want = getattr(recorded, field), getattr(wanted, field)
        if have != want:
            which = f"the preset '{arch}'" if where == "the preset" else f"the one in {arch}"
            raise TargetMismatchError(
                f"{pef} was compiled for target '{recorded.name}', not {which} "
                f"({field} {have} in the PEF, {want} in {where}): recompile it with "
                f"rdu-compile --arch {arch}"
            )
