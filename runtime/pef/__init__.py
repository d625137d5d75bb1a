"""The PEF file format: payload schema (``schema``), container (``container``), checks.

The compiler's emit-pef pass and the runtime both use this package; it imports only msgspec.
"""

from runtime.pef.container import decode_pef, encode_pef, read_pef, write_pef
from runtime.pef.validate import PefError, validate

__all__ = ["PefError", "decode_pef", "encode_pef", "read_pef", "validate", "write_pef"]
