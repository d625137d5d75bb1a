"""parallel_layout: a lone parallel unit's copies on a grid, its operands multicast along
straight lines of the grid, hand-computed cases (no compile)."""

from __future__ import annotations

from compiler.passes.parallel_layout import (
    BufferSpec,
    ParallelSpec,
    PortSpec,
    layout,
    line_slots,
    straight_lines,
)
from compiler.passes.routing import links
from compiler.targets import get_target


def test_a_group_over_rows_is_a_line_a_column_of_the_checkerboard() -> None:
    # A column block's copies at (2c + r % 2, r): rows 0 and 2 at x = 0, rows 1 and 3 at x = 1.
    copies = [(0, 0), (2, 0), (1, 1), (3, 1), (0, 2), (2, 2), (1, 3), (3, 3)]
    assert straight_lines([0, 2, 4, 6], copies) == [(0, 4), (2, 6)]
    assert straight_lines([3, 2], copies) == [(2, 3)]  # one row: one line, west to east


def test_a_line_starts_from_a_pmu_slot_at_its_far_end() -> None:
    sn10 = get_target("sn10")  # 40 x 32 slots, a PCU where x + y is even
    row_0 = [(x, 0) for x in range(0, 40, 2)]
    assert line_slots(row_0, sn10)[:2] == [(39, 0), (37, 0)]  # the east end first
    column_0 = [(0, y) for y in range(0, 32, 2)]
    assert line_slots(column_0, sn10)[:2] == [(0, 31), (0, 29)]  # the bottom first
    column_2 = [(2, y) for y in range(0, 32, 2)]
    assert line_slots(column_2, sn10)[:2] == [(2, 1), (2, 3)]  # every other pair: the top


def test_the_4096_matmul_streams_share_no_link_and_its_loads_take_none() -> None:
    sn10 = get_target("sn10")
    spec = ParallelSpec(
        "matmul_0",
        (4096, 4096, 4096),
        (4096, 1, 0),
        (32, 20, 1),
        (PortSpec(0, (4096, 0, 1)), PortSpec(1, (0, 1, 4096))),
        2,
        (
            BufferSpec("input.0", 128, from_dram=True, stored=False),
            BufferSpec("w", 128, from_dram=True, stored=False),
            BufferSpec("matmul_0", 160, from_dram=False, stored=True),
        ),
    )
    placed = layout(spec, sn10)
    assert sorted(len(s.copies) for s in placed.streams) == [16] * 40 + [20] * 32
    used: dict[object, int] = {}
    for stream in placed.streams:
        xs, ys = {x for x, _ in stream.hops}, {y for _, y in stream.hops}
        assert len(xs) == 1 or len(ys) == 1  # along one row or down one column
        for link in links(stream.hops):
            used[link] = used.get(link, 0) + 1
    assert max(used.values()) == 1  # no link carries two operand streams
    for b in (0, 1, 2):
        assert placed.pmus[b][0][0] == 0  # the first PMU in column 0, where DRAM attaches
    assert [len(r) for r in (*placed.fills.values(), *placed.stores.values())] == [1, 1, 1]
