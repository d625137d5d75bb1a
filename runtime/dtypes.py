"""The numpy dtypes of the fabric's element types (``runtime.machine.opcodes.ELEMENT_TYPES``).

``bf16`` is ``ml_dtypes.bfloat16`` (imported here, which registers the name ``bfloat16`` with
numpy); its ``astype`` from float32 rounds to nearest even, as torch's ``.to(torch.bfloat16)``.
"""

from __future__ import annotations

from typing import Final

import ml_dtypes
import numpy as np

from runtime.machine.opcodes import ELEMENT_TYPES

BF16: Final = np.dtype(ml_dtypes.bfloat16)
"""numpy's bfloat16 (``ml_dtypes``)."""

NUMPY_DTYPES: Final[dict[str, np.dtype]] = {n: np.dtype(e.numpy) for n, e in ELEMENT_TYPES.items()}
"""The numpy dtype of every fabric dtype."""

HOST_KINDS: Final[dict[str, str]] = {n: e.host_kinds for n, e in ELEMENT_TYPES.items()}
"""The numpy kinds of host arrays converted to each fabric dtype."""


def is_float(dtype: np.dtype) -> bool:
    """Whether ``dtype`` is a float of numpy's own or bfloat16 (whose numpy kind is ``V``)."""
    return dtype.kind == "f" or dtype == BF16
