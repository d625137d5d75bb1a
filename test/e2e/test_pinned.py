"""Symbols kept on chip while the sections are loaded in turn (``pin-resident-symbols``, cost
model rule 7): the MLP's training step at batch 64 on the default target does not fit the
fabric whole (its three sections take 62 PCUs and 106 PMUs of 64 each), so each section is
loaded every step, but the state, saved activations and gradients stay in pinned PMUs; the
emulator computes the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from e2e_helpers import MLP, compile_mlp, judged, rdu_test

from compiler.driver import compile_in_memory
from compiler.ideal import step_ideal
from compiler.passes import parallelize_units, placement
from compiler.targets import get_target
from runtime.machine.perf import nbytes, program_models
from runtime.machine.rules import pmu_footprint
from runtime.pef import read_pef
from runtime.pef.schema import Program, Residency
from tools.rdu_compile import model_spec
from tools.rdu_pef import format_program

BATCH = ["-b", "64"]


@pytest.fixture(scope="module")
def pinned_pef(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_mlp(tmp_path_factory.mktemp("pinned"), *BATCH)


def resident(program: Program) -> Residency:
    assert program.resident is not None
    return program.resident


def test_mlp_b64_keeps_its_state_in_pinned_pmus(pinned_pef: Path) -> None:
    program = read_pef(pinned_pef)
    kept = {program.meta.symbols[e.symbol].name for e in resident(program).symbols}
    assert not resident(program).co_resident
    for param in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"):
        assert {param, f"{param}.grad", f"{param}.momentum_buffer"} <= kept
    assert "saved.relu" in kept
    assert not kept & {"input.0", "target.0", "loss", "output.0", "lr", "momentum"}
    # Every section is loaded every run, and only the symbols not kept cross DRAM.
    models = program_models(program)
    assert not any(m.resident for m in models)
    for m in models:
        assert m.cycles == m.load_cycles + max(
            m.compute_cycles, m.pmu_cycles, m.dram_cycles, m.link_cycles
        )
    moved = sum(m.dram_bytes for m in models)
    crossing = [nbytes(s.shape, s.dtype) for s in program.meta.symbols if s.name not in kept]
    assert moved <= 2 * sum(crossing)
    # Its first load is the state's one DRAM read, not the sections' configurations.
    report = json.loads((pinned_pef.parent / "report.json").read_text())
    assert report["resident"]["co_resident"] is False
    state = [e for e in resident(program).symbols if program.meta.symbols[e.symbol].role in
             ("parameter", "optimizer_state")]  # fmt: skip
    assert 0 < report["resident"]["first_load_cycles"] < sum(m.load_cycles for m in models)
    assert len(state) == 8
    # The same sections with their symbols through DRAM: slower.
    apart = program_models(Program(meta=program.meta, sections=program.sections))
    assert sum(m.cycles for m in apart) > sum(m.cycles for m in models)
    assert sum(m.dram_bytes for m in apart) > 4 * moved


def test_only_a_section_binding_nothing_to_a_pinned_symbol_sits_beside_its_home(
    pinned_pef: Path,
) -> None:
    program = read_pef(pinned_pef)
    t = program.meta.target
    homes = {(e.section, e.pmu): e.symbol for e in resident(program).symbols}
    shared = {(s.section, s.pmu) for e in resident(program).symbols for s in e.shared}
    sections = {s.name: s for s in program.sections}
    pinned = {tuple(sections[s].pmus[i].at): (sym, sections[s].pmus[i]) for (s, i), sym in
              homes.items()}  # fmt: skip
    beside = 0
    for s in program.sections:
        binds = {p.symbol for p in s.pmus if p.source == "dram"} | {o.symbol for o in s.outputs}
        for i, pmu in enumerate(s.pmus):
            if (s.name, i) in homes.keys() | shared or tuple(pmu.at) not in pinned:
                continue
            symbol, home = pinned[tuple(pmu.at)]
            assert symbol not in binds, (s.name, i)
            assert (
                sum(
                    pmu_footprint(
                        p.tile_bytes, p.nbuf, nbytes(p.shape, p.dtype), p.pmus, t.pmu_bytes
                    )
                    for p in (home, pmu)
                )
                <= t.pmu_bytes
            )
            beside += 1
    # (the validator refuses one that does not: test_validate.py, on a hand-made PEF)
    assert beside > 0  # the forward's buffers beside the momentum's homes


def test_the_sections_placed_again_are_polished_by_the_performance_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once every pin is known, each section placed again is placed once more and kept as the
    placement of it that the performance model times fastest (``placement.polish`` scored by
    ``_modelled_cycles``, from ``_Pinning._polish``): MLP b64's step on the default target
    5,470 cycles to 5,430, no section slower, though its forward's busiest link is busier (584
    cycles to 768: not what sets its time); with no longer anneal tried, the placements that
    found the pins are the PEF's."""
    target = get_target("plasticine")
    _, spec = model_spec(str(MLP), [], False, 64, 0, False, target)
    # With its optimizer on one PCU a unit, as it was (parallelize-units' state in pieces
    # off): the pins then leave the forward placed again where polishing it pays.
    monkeypatch.setattr(parallelize_units, "split_state", lambda *args: None)
    bounds: dict[int, list[int]] = {}
    links: dict[int, list[int]] = {}
    steps: dict[int, int] = {}
    for seeds in (0, placement.POLISH_SEEDS):
        monkeypatch.setattr(placement, "POLISH_SEEDS", seeds)
        program = compile_in_memory(spec, inference=False, target=target)
        assert not resident(program).co_resident
        models = program_models(program)
        bounds[seeds] = [m.cycles - m.load_cycles for m in models]
        links[seeds] = [m.link_cycles for m in models]
        steps[seeds] = sum(m.cycles for m in models)
    polished, plain = bounds[placement.POLISH_SEEDS], bounds[0]
    assert all(p <= q for p, q in zip(polished, plain, strict=True))
    assert steps[placement.POLISH_SEEDS] < steps[0]
    assert links[placement.POLISH_SEEDS][0] > links[0][0]  # the model, not the link, chose


def test_rdu_pef_says_the_homes_are_pinned(pinned_pef: Path) -> None:
    lines = list(format_program(read_pef(pinned_pef), "resident", summary=False))
    assert any(x.startswith("resident: sections loaded in turn, homes pinned,") for x in lines)


def test_rdu_test_passes_on_the_pinned_pef(pinned_pef: Path) -> None:
    report = rdu_test(MLP, pinned_pef)  # the batch comes from the PEF
    for param in ("fc1.weight", "fc2.bias"):
        assert f"{param}.grad" in judged(report, "backward") & judged(report, "end to end")
        assert param in judged(report, "optimizer")


def test_hf_gpt2_b8_on_sn10_is_within_1_5x_of_its_ideal() -> None:
    """Issue 16's line for HF GPT-2 b8 on sn10, compiled as bench/mapping.py does: its state,
    saved activations and gradients in pinned PMUs (the sections do not fit together), the
    modelled step within 1.5x of the ideal without residency (``compiler.ideal``: FlopCounterMode
    and the state through DRAM once, not our cost model). 1.19x (76.7 us of 64.5); 2.1x before,
    its optimizer streaming the gradients and every parameter and state through DRAM."""
    target = get_target("sn10")
    path = Path(__file__).resolve().parents[2] / "examples" / "hf_gpt2" / "model.py"
    _, spec = model_spec(str(path), [], False, 8, 0, False, target)
    program = compile_in_memory(spec, inference=False, target=target)
    assert not resident(program).co_resident
    modelled = sum(m.seconds for m in program_models(program))
    assert modelled <= 1.5 * step_ideal(spec, program, target).seconds
