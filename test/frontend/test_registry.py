"""The op table: each converter family fills a table of its own, and the registry joins them,
refusing an op that two converters claim (a later family would silently win otherwise)."""

from __future__ import annotations

import pytest

from compiler.frontend import aten, aten_cnn, aten_storage, aten_transformer, registry
from compiler.frontend.converter import Call, ConverterTable, Result


def _first(c: Call) -> Result:
    return None


def _second(c: Call) -> Result:
    return None


def test_the_registry_is_the_union_of_the_families() -> None:
    families = (aten.TABLE, aten_cnn.TABLE, aten_storage.TABLE, aten_transformer.TABLE)
    assert sum(len(t) for t in families) == len(registry.CONVERTERS)
    for table in families:
        assert table.items() <= registry.CONVERTERS.items()
    assert registry.CONVERTERS["aten.convolution.default"].__module__ == aten_cnn.__name__


def test_a_family_refuses_two_converters_for_one_op() -> None:
    table = ConverterTable()
    table.converts("aten.foo.default")(_first)
    with pytest.raises(ValueError, match="two converters for aten.foo.default: _first, _second"):
        table.converts("aten.foo.default")(_second)


def test_the_union_refuses_an_op_two_families_convert() -> None:
    one, other = ConverterTable(), ConverterTable()
    one.converts("aten.foo.default")(_first)
    other.converts("aten.foo.default")(_second)
    with pytest.raises(ValueError, match="two converters for aten.foo.default"):
        registry.join_tables(one, other)
