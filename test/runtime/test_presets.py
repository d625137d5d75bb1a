"""The runtime's copy of the preset figures (``runtime/pef/presets.py``, what ``rdu-run --arch
NAME`` compares a PEF's target with) agrees with the compiler's presets."""

from __future__ import annotations

from compiler.targets import PRESETS as COMPILER_PRESETS
from runtime.pef.presets import PRESETS


def test_the_runtime_knows_every_preset_by_the_compilers_figures() -> None:
    assert set(PRESETS) == set(COMPILER_PRESETS)
    for name, target in COMPILER_PRESETS.items():
        assert PRESETS[name] == target.to_pef(), name
