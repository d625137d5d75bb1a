"""The frontend's op table: every ATen converter by op name, the union of the families' tables.

A family is a module of converters with a ``TABLE`` of its own (:class:`ConverterTable`):
``aten.py`` (elementwise, reductions, matmul, views), ``aten_cnn.py`` (convolution, pooling,
padding), ``aten_storage.py`` (empty tensors, copies, ``as_strided``), ``aten_transformer.py``
(slices, gather and scatter-add, dropout). A new family is one more import and entry here.
"""

from __future__ import annotations

from compiler.frontend import aten, aten_cnn, aten_storage, aten_transformer
from compiler.frontend.converter import Converter, ConverterTable


def join_tables(*tables: ConverterTable) -> dict[str, Converter]:
    """One table of all, refusing an op name that two families convert."""
    union: dict[str, Converter] = {}
    for table in tables:
        for name, converter in table.items():
            if name in union:
                raise ValueError(
                    f"two converters for {name}: {union[name].__module__}."
                    f"{union[name].__name__}, {converter.__module__}."
                    f"{converter.__name__}"
                )
            union[name] = converter
    return union


CONVERTERS: dict[str, Converter] = join_tables(
    aten.TABLE, aten_cnn.TABLE, aten_storage.TABLE, aten_transformer.TABLE
)
"""ATen op name (``aten.add.Tensor``) -> its converter."""
