"""Shared fixtures of the hardening tests: the MLP example compiled once per test session, and a
small disk that fills up for real."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hardening_helpers import MLP, compile_model


@pytest.fixture(scope="session")
def mlp_pef(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_model(MLP, tmp_path_factory.mktemp("hardening-mlp"))


@pytest.fixture
def small_disk(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A tmpfs of ``small_disk_size`` (a ``pytest.mark.parametrize``d indirect value, or 1 MiB:
    twelve of the MLP's checkpoints) mounted under ``tmp_path``; skipped, with mount's own
    words, where mounting is not allowed (not root, a container without CAP_SYS_ADMIN)."""
    size = getattr(request, "param", "1m")
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)]
    try:
        mounted = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        pytest.skip("cannot mount a small tmpfs here: no mount command")
    if mounted.returncode != 0:
        why = " ".join(mounted.stderr.split()) or f"exit status {mounted.returncode}"
        pytest.skip(f"cannot mount a small tmpfs here: {why}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], capture_output=True, timeout=60)
