"""Shared fixtures of the pass tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The processes forked during the test, one entry each (``os.fork`` counted; clear the
    list to count from a later point)."""
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    forked: list[int] = []
    real_fork = os.fork

    def counted_fork() -> int:
        forked.append(1)
        return real_fork()

    monkeypatch.setattr(os, "fork", counted_fork)
    return forked
