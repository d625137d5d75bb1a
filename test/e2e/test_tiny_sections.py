"""The MLP on the tiny target (8 PCUs, 8 PMUs): cut into sections run in sequence, tensors
spilled to DRAM between them, still matching torch; ``--o0`` gives every op a section."""

from __future__ import annotations

from pathlib import Path

from e2e_helpers import MLP, compile_mlp, rdu_test

from runtime.pef import read_pef


def test_mlp_on_tiny_is_cut_into_sections_and_matches_torch(tmp_path: Path) -> None:
    # Batch 64: the hidden activation (64x128 f32, 32 KiB) spans two 16 KiB PMUs.
    pef = compile_mlp(tmp_path, "--arch", "tiny", "-b", "64")
    program = read_pef(pef)
    names = [s.name for s in program.sections]
    assert names[:2] == ["forward.0", "forward.1"]
    assert any(n.startswith("backward.") for n in names) and names[-1].startswith("optimizer.")
    assert any(
        p.pmus > 1 and len(p.more_at) == p.pmus - 1 for s in program.sections for p in s.pmus
    )
    rdu_test(MLP, pef)


def test_o0_gives_every_op_a_section_and_matches_torch(tmp_path: Path) -> None:
    pef = compile_mlp(tmp_path, "--arch", "tiny", "--o0")
    program = read_pef(pef)
    assert len(program.sections) >= 60
    for section in program.sections:
        assert len({p.name.split(".", 1)[0] for p in section.pcus}) <= 1, section.name
    assert "--o0" in program.meta.compile_flags
    rdu_test(MLP, pef)
