"""Fabric targets for the compiler: ``get_target(arch)`` gives a preset by name or reads a
target file (TOML, see ``runtime/pef/target_file.py``, validated field by field on load).

The ``Target`` description, the presets (with the public figures they come from and the
assumptions they make) and the figures derived from a target live in the shared layer,
``runtime/machine/targets.py``, which the performance model and the runtime read too; the
passes query the ``Target`` they are given, never constants of their own.
"""

from __future__ import annotations

from pathlib import Path

from runtime.machine.targets import PRESETS, Target
from runtime.pef.target_file import TargetFileError, looks_like_target_file, read_target_file

__all__ = ["PRESETS", "Target", "TargetError", "get_target", "load_target_file"]


class TargetError(Exception):
    """An unknown target name or a bad target description."""


def get_target(arch: str) -> Target:
    """The preset called ``arch``, or the target described by the file ``arch`` (TOML)."""
    if arch in PRESETS:
        return PRESETS[arch]
    if looks_like_target_file(arch):
        return load_target_file(arch)
    raise TargetError(
        f"unknown target '{arch}' (choose from {', '.join(sorted(PRESETS))}, or give a "
        "target file NAME.toml)"
    )


def load_target_file(path: str | Path) -> Target:
    """The target a TOML file describes (see ``runtime/pef/target_file.py``)."""
    try:
        return Target.from_pef(read_target_file(path), source=str(path))
    except TargetFileError as err:
        raise TargetError(str(err)) from None
