"""The configuration arithmetic the compiler and the runtime share (``runtime/machine/rules.py``),
on small cases worked out by hand."""

from __future__ import annotations

from runtime.machine.rules import (
    ROWS_MOST,
    address_range,
    combiner_problem,
    copy_block,
    held,
    in_place_problem,
    lanes_counter,
    one_to_one,
    parallel_problem,
    pipeline_depth,
    pmu_footprint,
    pmus_to_hold,
    reaches_any,
    reduced_counters,
    row_blocks,
    row_walk,
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


def test_row_blocks() -> None:
    # A matmul's left operand [4, 8] read over [m, n, k] = [4, 3, 8]: row i each n.
    assert row_blocks([4, 3, 8], [8, 0, 1], 32) == (0, 4)
    # Its result written over the same space, each row after its reduction over k.
    assert row_blocks([4, 3, 8], [3, 1, 0], 12) == (0, 4)
    # Counters of extent 1 outside do not count; the outermost one left walks the rows.
    assert row_blocks([1, 4, 8], [0, 8, 1], 32) == (1, 4)
    # Part of each row, at an offset inside the first (columns 4 to 7 of rows of 8): each
    # iteration still touches its own row only. Past it (columns 5 to 8), a read row ends in
    # the next one: no blocks.
    assert row_blocks([4, 4], [8, 1], 32, offset=4) == (0, 4)
    assert row_blocks([3, 4], [8, 1], 24, offset=5) is None
    # Transposed, broadcast or reduced over an outer counter, gathered: no blocks.
    assert row_blocks([8, 4], [1, 8], 32) is None
    assert row_blocks([16, 8], [0, 1], 8) is None
    assert row_blocks([4, 8], [8, 1], 32, indexed=True) is None
    # Not the whole buffer: no blocks of it.
    assert row_blocks([2, 8], [8, 1], 32) is None


def test_row_walk_flattens_the_leading_counters() -> None:
    # An elementwise unit over [8, 32, 48] row-major, its lanes counter (2) kept whole: 256
    # rows of 48, not row_blocks' 8 of 1536.
    assert row_walk([8, 32, 48], [1536, 48, 1], 12288, whole=2) == ((0, 1), (8, 32))
    # Without a counter kept whole, every element is a row.
    assert row_walk([8, 32, 48], [1536, 48, 1], 12288) == ((0, 1, 2), (8, 32, 48))
    # A matmul's left operand read over [m, n, k]: n (stride 0) stops the rows at m.
    assert row_walk([4, 3, 8], [8, 0, 1], 32) == ((0,), (4,))
    # The heads of [8, 32, 4 * 12] read as [8, 4, 32, 12]: h (stride 12) does not split a
    # batch's block evenly in order, so the rows stop at the batch.
    assert row_walk([8, 4, 32, 12], [1536, 12, 48, 1], 12288) == ((0,), (8,))
    # Attention's values, columns 96 to 143 of each token's [q | k | v] row of 144, the same
    # way: 8 rows (a batch's 32 tokens); read a token at a time ([8, 32, 48]), 256 rows.
    assert row_walk([8, 4, 32, 12], [4608, 12, 144, 1], 36864, 96) == ((0,), (8,))
    assert row_walk([8, 32, 48], [4608, 144, 1], 36864, 96, whole=2) == ((0, 1), (8, 32))
    # At offset 105 a token's 40 columns run into the next token's row (the last into the
    # next batch's block): no rows.
    assert row_walk([8, 32, 40], [4608, 144, 1], 36864, 104, whole=2) == ((0, 1), (8, 32))
    assert row_walk([8, 32, 40], [4608, 144, 1], 36864, 105, whole=2) is None
    # Never more than ROWS_MOST rows; the first counter always.
    assert row_walk([2, ROWS_MOST, 2], [2 * ROWS_MOST, 2, 1], 4 * ROWS_MOST) == ((0,), (2,))
    assert row_walk([8, 4], [1, 8], 32) is None  # where row_blocks has no blocks


def test_a_combiner_needs_values_that_meet() -> None:
    assert combiner_problem([4, 8], [1, 0], "add") is None  # a row sum
    assert "combiner is 'none'" in str(combiner_problem([4, 8], [1, 0], "none"))
    assert "no counter is reduced" in str(combiner_problem([4, 8], [8, 1], "max"))
    assert combiner_problem([3, 0], [1, 0], "max") is None  # writes max's identity, -inf
    # A scatter's index may repeat: it adds (or stores), never takes a max.
    assert combiner_problem([4, 8], [8, 1], "add", scatter=True) is None
    assert combiner_problem([4, 8], [8, 1], "none", scatter=True) is None
    assert "scatter" in str(combiner_problem([4, 8], [0, 1], "max", scatter=True))


def test_an_output_reaches_addresses_when_its_kept_counters_have_points() -> None:
    assert not reaches_any([4, 0], [1, 0])  # an input over an empty space reads nothing
    assert reaches_any([4, 0], [1, 0], output=True)  # a sum over nothing still writes zeros
    assert not reaches_any([0, 4], [4, 1], output=True)


def test_parallel_factors() -> None:
    assert parallel_problem([4, 6, 3], [6, 1, 0], [2, 3, 1]) is None
    assert "no block" in str(parallel_problem([4, 6, 3], [6, 1, 0], [3, 1, 1]))  # 2, 2, 0 rows
    assert "reduced counter 2" in str(parallel_problem([4, 6, 3], [6, 1, 0], [1, 1, 3]))
    assert "2 factors" in str(parallel_problem([4, 6, 3], [6, 1, 0], [1, 1]))
    assert "data-dependent" in str(parallel_problem([4], [1], [2], indexed=True))
    # a counter stage reading counter 2 (the classes of a cross-entropy's masked sum): the rows
    # may be split, not the counter it reads
    assert parallel_problem([4, 6, 3], [6, 1, 0], [2, 3, 1], counters=[2]) is None
    assert "counter 1, which a 'counter' stage reads" in str(
        parallel_problem([4, 6, 3], [6, 1, 0], [2, 3, 1], counters=[1])
    )
    assert "'rand' stage" in str(parallel_problem([4], [1], [2], positional=True))
    reads = [("a", (0, (1,))), ("a", (0, (2,)))]
    assert "input 1 reads a" in str(parallel_problem([4], [1], [2], reads=reads))


def test_pmus_hold_a_buffer_whole_in_pieces_of_pmu_bytes() -> None:
    assert [pmus_to_hold(n, 1024) for n in (0, 1, 1024, 1025, 4096)] == [1, 1, 1, 2, 4]
    assert held(1024, 1, 1024) and not held(1025, 1, 1024) and held(1025, 2, 1024)
    assert held(0, 0, 1024)  # a buffer in no PMU yet is in one


def test_a_buffer_held_in_several_pmus_takes_an_equal_piece_of_each() -> None:
    # 36 KB of momentum held in 3 PMUs of 512 KB: 12 KB of each, the piece a copy streams
    # (not 36 KB of the first, as "the first PMU filled first" had it); 1,025 bytes in 2 PMUs
    # of 1,024: 513 of each; one that streams in tiles takes its tiles in flight.
    assert pmu_footprint(0, 1, 36 * 1024, 3, 512 * 1024) == 12 * 1024
    assert pmu_footprint(0, 1, 1025, 2, 1024) == 513
    assert pmu_footprint(256, 2, 1025, 2, 1024) == 513
    assert pmu_footprint(0, 1, 36 * 1024, 1, 512 * 1024) == 36 * 1024
    assert pmu_footprint(256, 2, 4096, 1, 1024) == 512  # tiles: 2 of 256 bytes in flight


def test_one_to_one_accesses_visit_a_new_address_at_every_point() -> None:
    assert one_to_one([4, 8], [8, 1]) and one_to_one([4, 8], [1, 4])  # row-major, transposed
    assert one_to_one([3, 1], [1, 0])  # a counter of extent 1 moves nothing
    assert not one_to_one([4, 8, 2], [8, 1, 0])  # a reduced counter: the same address twice
    assert not one_to_one([2, 2], [1, 1])  # (0, 1) and (1, 0) meet


def test_an_update_in_place_reads_every_address_where_it_is_written() -> None:
    write = ([4, 8], 0, [8, 1])
    assert in_place_problem(write, [(write, None)]) is None  # the writer reads it there
    # Another unit reading it there, its result read by the writer where it is written.
    passed = (([4, 8], 0, [8, 1]), ([4, 8], 0, [8, 1]))
    assert in_place_problem(write, [(write, None), (write, passed)]) is None
    transposed = ([4, 8], 0, [1, 4])
    assert "walks it otherwise" in str(in_place_problem(write, [(transposed, None)]))
    shifted = (([4, 8], 0, [8, 1]), ([4, 8], 1, [8, 1]))  # the writer reads the next element
    assert "not read by the writer where" in str(in_place_problem(write, [(write, shifted)]))
    summed = (([4, 8, 2], 0, [8, 1, 0]), ([4, 8, 2], 0, [8, 1, 0]))
    assert "one address a point" in str(in_place_problem(write, [(write, summed)]))
    assert "one address a point" in str(in_place_problem(([2, 2], 0, [1, 1]), []))
