"""The digest of a tensor's values, as a PEF records it for a non-persistent buffer.

Both sides hash the same bytes: the dtype name and shape, then the elements row-major and
little-endian in the symbol's dtype (f32, i64, or one byte a bool for i1). The compiler hashes
the model's tensor when it compiles, the runtime the value it is given.
"""

from __future__ import annotations

import hashlib
from typing import Any


def value_sha256(dtype: str, array: Any) -> str:
    """sha256 (hex) of a numpy ``array`` already in the PEF ``dtype`` (f32, i64, i1)."""
    digest = hashlib.sha256(f"{dtype}{list(array.shape)}".encode())
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    digest.update(little.tobytes(order="C"))
    return digest.hexdigest()
