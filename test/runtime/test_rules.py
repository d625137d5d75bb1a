"""The configuration arithmetic the compiler and the runtime share (``runtime/machine/rules.py``),
on small cases worked out by hand."""

from __future__ import annotations

from runtime.machine.rules import (
    address_range,
    copy_block,
    lanes_counter,
    pipeline_depth,
    reduced_counters,
    unit_depth,
    visit_order,
)


def test_reduced_counters_have_out_stride_0_and_more_than_one_point() -> None:
    assert reduced_counters([4, 16, 8], [16, 1, 0]) == [2]
    assert reduced_counters([4, 1, 8], [0, 0, 1]) == [0]  # an extent-1 counter folds nothing
    assert reduced_counters([], []) == []


def test_the_lanes_counter_is_the_innermost_wide_counter_not_reduced() -> None:
    assert lanes_counter([4, 16, 8], [16, 1, 0]) == 1
    assert lanes_counter([16, 1], [1, 1]) == 0
    assert lanes_counter([8], [0]) == 0  # everything reduced: the innermost
    assert lanes_counter([], []) == -1


def test_address_range_over_negative_strides_and_an_index() -> None:
    assert address_range(0, [8, 1], [4, 8]) == (0, 31)
    assert address_range(7, [-1], [8]) == (0, 7)  # a reversed row
    assert address_range(3, [0, 2], [5, 4]) == (3, 9)  # a broadcast counter adds nothing
    assert address_range(0, [1], [4], index_stride=4, index_limit=10) == (0, 39)  # a gather
    assert address_range(5, [], []) == (5, 5)


def test_copy_blocks_round_up() -> None:
    assert copy_block([10, 16, 3], [3, 4, 1]) == (4, 4, 3)
    assert copy_block([0], [1]) == (0,)


def test_unit_depth_adds_the_lane_tree_of_a_reduction_over_the_lanes() -> None:
    assert pipeline_depth(["const", "counter", "mul"], "add", "mul") == 1
    # A sum of 64 points on 16 lanes (its one counter reduced, so on the lanes): the
    # accumulate and a 4-level tree; rows summed side by side have no tree.
    assert unit_depth([], "add", None, [64], [0], lanes=16) == 1 + 4
    assert unit_depth([], "add", None, [8, 64], [1, 0], lanes=16) == 1
    # A matmul's reduction is not over its lanes counter: the multiply-add alone.
    assert unit_depth(["mul"], "add", "mul", [4, 16, 8], [16, 1, 0], lanes=16) == 1


def test_visit_order() -> None:
    # Row-major [4, 8]: one run of 32 consecutive elements.
    assert visit_order([4, 8], [8, 1]) == (0, [(32, 1)])
    # Transposed: two loops, not the same order as row-major.
    assert visit_order([8, 4], [1, 8]) == (0, [(8, 1), (4, 8)])
    # A reduction innermost writes each element once, when its sum is over: in order.
    assert visit_order([4, 8, 16], [8, 1, 0]) == (0, [(32, 1)])
    # A reduction (or broadcast) over an outer counter revisits elements: no one run.
    assert visit_order([16, 8], [0, 1]) is None
    assert visit_order([8], [1], indexed=True) is None  # a gather
