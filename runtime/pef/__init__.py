"""The PEF file format: payload schema (``schema``), container (``container``), checks, and the
target files (``target_file``: a fabric in TOML, the fields of a PEF's target).

The compiler's emit-pef pass and the runtime both use this package; it imports only msgspec,
tomllib and the fabric's shared rules (``runtime.machine``: the opcode table the validator
checks stages against, the configuration arithmetic, the presets).
"""

from runtime.pef.container import decode_pef, encode_pef, read_pef, write_pef
from runtime.pef.validate import PefError, validate

__all__ = ["PefError", "decode_pef", "encode_pef", "read_pef", "validate", "write_pef"]
