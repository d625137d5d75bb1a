"""The numpy dtypes of the fabric's element types (``runtime.machine.opcodes.ELEMENT_TYPES``).

``bf16`` is ``ml_dtypes.bfloat16``, whose ``astype`` from float32 rounds to nearest even, as
torch's ``.to(torch.bfloat16)``. ml_dtypes is imported when bf16 is first asked for (``bf16``,
``NUMPY_DTYPES["bf16"]``): its import takes most of a second, a tenth of an rdu-run of a
float32 program, which never needs it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Final

import numpy as np

from runtime.machine.opcodes import ELEMENT_TYPES


@functools.cache
def bf16() -> np.dtype:
    """numpy's bfloat16 (``ml_dtypes``, imported on the first call)."""
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


def is_bf16(dtype: np.dtype) -> bool:
    """Whether ``dtype`` is bfloat16 (told without importing ml_dtypes)."""
    return dtype.name == "bfloat16"


class _NumpyDtypes(Mapping[str, np.dtype]):
    """Fabric dtype name -> numpy dtype; bf16's made when it is first looked up."""

    def __getitem__(self, name: str) -> np.dtype:
        numpy_name = ELEMENT_TYPES[name].numpy
        return bf16() if numpy_name == "bfloat16" else np.dtype(numpy_name)

    def __iter__(self) -> Iterator[str]:
        return iter(ELEMENT_TYPES)

    def __len__(self) -> int:
        return len(ELEMENT_TYPES)


NUMPY_DTYPES: Final[Mapping[str, np.dtype]] = _NumpyDtypes()
"""The numpy dtype of every fabric dtype."""

HOST_KINDS: Final[dict[str, str]] = {n: e.host_kinds for n, e in ELEMENT_TYPES.items()}
"""The numpy kinds of host arrays converted to each fabric dtype."""


def fabric_dtype_name(dtype: np.dtype) -> str | None:
    """The fabric's name of numpy's ``dtype`` (``float32`` -> ``f32``), None for another."""
    for name, element in ELEMENT_TYPES.items():
        if element.numpy == dtype.name:
            return name
    return None


def is_float(dtype: np.dtype) -> bool:
    """Whether ``dtype`` is a float of numpy's own or bfloat16 (whose numpy kind is ``V``)."""
    return dtype.kind == "f" or is_bf16(dtype)
