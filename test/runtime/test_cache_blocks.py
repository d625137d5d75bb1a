"""Elementwise PCUs over large spaces run block by block (``runtime.fabric.cache_blocks``) and
compute exactly what one call over the whole space computes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pefkit import linear_program

from runtime import fabric
from runtime.fabric import cache_blocks
from runtime.session import TrainingSession

B, K, N = 2, 500, 300  # the weight's AdamW update: 150,000 points, more than two blocks
HYPER = {"lr": 0.05, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "weight_decay": 0.1}


def _two_steps() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((N, K), dtype=np.float32)
    session = TrainingSession(linear_program(B, K, N, "adamw"), {"weight": weight})
    for _ in range(2):
        x = rng.standard_normal((B, K), dtype=np.float32)
        t = rng.standard_normal((B, N), dtype=np.float32)
        session.step({"input.0": x, "target.0": t}, HYPER)
    return session.state()


def test_blocks_tile_the_space_with_moved_offsets() -> None:
    optimizer = linear_program(B, K, N, "adamw").sections[-1]
    pcu = max(optimizer.pcus, key=lambda p: math.prod(p.space))
    blocks = cache_blocks(pcu)
    assert len(blocks) > 2
    rows = [b.space[0] for b in blocks]
    assert sum(rows) == pcu.space[0] and all(b.space[1:] == pcu.space[1:] for b in blocks)
    first_row = 0
    for block in blocks:  # each block's accesses start at its first row
        for port, moved in zip(pcu.inputs, block.inputs, strict=True):
            shift = port.access.strides[0] * first_row
            assert moved.access.offset == port.access.offset + shift
        assert block.out.offset == pcu.out.offset + pcu.out.strides[0] * first_row
        first_row += block.space[0]


def test_reductions_and_small_spaces_are_not_blocked() -> None:
    forward = linear_program(B, K, N, "adamw").sections[0]
    for pcu in forward.pcus:
        if pcu.combiner != "none" or math.prod(pcu.space) <= 2 * fabric._BLOCK_ELEMENTS:
            assert cache_blocks(pcu) == [pcu]


def test_blocked_training_equals_one_call_over_the_space(monkeypatch: pytest.MonkeyPatch) -> None:
    optimizer = linear_program(B, K, N, "adamw").sections[-1]
    assert max(len(cache_blocks(p)) for p in optimizer.pcus) > 2
    monkeypatch.setattr(fabric, "host_threads", lambda: 1)  # one thread: no cut for a share
    blocked = _two_steps()
    monkeypatch.setattr(fabric, "_BLOCK_ELEMENTS", 1 << 40)
    whole = _two_steps()
    assert blocked.keys() == whole.keys()
    for name in whole:
        np.testing.assert_array_equal(blocked[name], whole[name], err_msg=name)


def test_blocks_on_two_threads_equal_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fabric, "host_threads", lambda: 2)
    two = _two_steps()
    monkeypatch.setattr(fabric, "host_threads", lambda: 1)
    one = _two_steps()
    for name in one:
        np.testing.assert_array_equal(two[name], one[name], err_msg=name)


def test_a_pmu_is_freed_after_its_last_reader() -> None:
    forward = linear_program(B, K, N, "adamw").sections[0]
    frees = fabric.last_readers(forward)
    outputs = {out.pmu for out in forward.outputs}
    freed = [pmu for f in frees for pmu in f]
    assert len(freed) == len(set(freed)) and not outputs & set(freed)
    for i, pmus in enumerate(frees):
        for pmu in pmus:  # no later unit reads it
            assert all(p.pmu != pmu for later in forward.pcus[i + 1 :] for p in later.inputs)


def test_two_threads_cut_a_mid_sized_unit_in_two() -> None:
    optimizer = linear_program(2, 300, 200, "adamw").sections[-1]  # a 60,000-point update
    pcu = max(optimizer.pcus, key=lambda p: math.prod(p.space))
    assert cache_blocks(pcu) == [pcu]
    halves = cache_blocks(pcu, threads=2)
    assert pcu.space == [200, 300]
    assert [b.space for b in halves] == [[100, 300], [100, 300]]
