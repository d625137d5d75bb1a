"""``i64_values``: a unit's space, tile and parallel factors read as xdsl's ``get_values`` does."""

from __future__ import annotations

import pytest
from xdsl.dialects.builtin import DenseArrayBase, i64

from dialects.rdu_tile import dense_i64, i64_values


@pytest.mark.parametrize("values", [(), (1,), (8, 32, 48), (-3, 0, 2**63 - 1, -(2**63))])
def test_i64_values_are_get_values(values: tuple[int, ...]) -> None:
    packed = dense_i64(values)
    assert i64_values(packed) == packed.get_values() == values
    built = DenseArrayBase.from_list(i64, values)  # not interned: equal bytes, the same values
    assert i64_values(built) == values
