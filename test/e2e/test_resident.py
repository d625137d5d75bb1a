"""Co-resident sections end to end (``compiler/passes/co_place_sections.py``, cost model rule
7): the MLP's training step at batch 256 on sn10 sits on the fabric whole, with its state,
saved activations and gradients kept on chip; the emulator computes the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from e2e_helpers import MLP, compile_mlp, in_process, judged, rdu_test

from compiler.driver import compile_in_memory
from compiler.passes import placement
from compiler.targets import get_target
from runtime.machine.perf import nbytes, program_models
from runtime.pef import read_pef
from runtime.pef.schema import Program
from tools.rdu_compile import model_spec
from tools.rdu_pef import format_program

BATCH = ["-b", "256"]


@pytest.fixture(scope="module")
def resident_pef(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_mlp(tmp_path_factory.mktemp("resident"), "--arch", "sn10", *BATCH)


def on_chip(program: Program) -> set[str]:
    assert program.resident is not None
    return {program.meta.symbols[e.symbol].name for e in program.resident.symbols}


def test_mlp_b256_on_sn10_is_co_resident_near_its_ideal(resident_pef: Path) -> None:
    program = read_pef(resident_pef)
    kept = on_chip(program)
    for param in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"):
        assert {param, f"{param}.grad", f"{param}.momentum_buffer"} <= kept
    assert "saved.relu" in kept
    assert not kept & {"input.0", "target.0", "loss", "output.0", "lr", "momentum"}
    models = program_models(program)
    assert [m.resident for m in models] == [True, True, True]
    # Only the batch (read by the forward and the backward), the hyperparameters, the loss and
    # the output cross DRAM.
    moved = sum(m.dram_bytes for m in models)
    crossing = [nbytes(s.shape, s.dtype) for s in program.meta.symbols if s.name not in kept]
    assert moved <= 2 * sum(crossing)
    # The report's ideal (compiler/ideal.py, not our cost model) against the modelled step:
    # issue 16's lines, within 1.5x of the ideal without residency (0.85x) and 3x of the one
    # with (2.79x: the sections run chained, rule 8; 4.63x when each waited for the one
    # before, 1,630 cycles against 2,649 before the placement was polished, 1,598 now).
    report = json.loads((resident_pef.parent / "report.json").read_text())
    assert report["ideal"]["of_ideal"] <= 1.5
    assert report["ideal"]["of_resident_ideal"] <= 3.0
    assert report["resident"]["first_load_cycles"] >= sum(m.load_cycles for m in models)
    # The same sections each loaded every step, their symbols through DRAM: slower.
    apart = program_models(Program(meta=program.meta, sections=program.sections))
    assert sum(m.cycles for m in apart) > sum(m.cycles for m in models) * 1.2


def test_the_co_resident_placement_is_polished_by_its_busiest_link(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """co-place-sections keeps, of its placement of all the sections and those of longer
    anneals, the one whose busiest link moves the fewest bytes (``placement.polish``). MLP b256
    on sn40l: the chained step was bound by that link, 1,808 cycles, now 1,332, bound by
    its compute."""
    target = get_target("sn40l")
    _, spec = model_spec(str(MLP), [], False, 256, 0, False, target)
    steps: dict[int, int] = {}
    links: dict[int, int] = {}
    for seeds in (0, placement.POLISH_SEEDS):
        monkeypatch.setattr(placement, "POLISH_SEEDS", seeds)
        program = compile_in_memory(spec, inference=False, target=target)
        assert program.resident is not None and program.resident.co_resident
        models = program_models(program)
        steps[seeds] = sum(m.cycles for m in models)
        links[seeds] = max(m.link_cycles for m in models)
    assert links[placement.POLISH_SEEDS] < links[0]
    assert steps[placement.POLISH_SEEDS] < steps[0]


def test_rdu_pef_shows_what_stays_on_chip(resident_pef: Path) -> None:
    lines = list(format_program(read_pef(resident_pef), "resident", summary=False))
    lines = lines[lines.index(next(x for x in lines if x.startswith("resident:"))) :]
    assert lines[0].startswith("resident: sections co-resident,") and "fc1.weight" in lines[0]
    assert any(line.startswith("  on chip saved.relu: home forward pmu") for line in lines)
    at = lines.index(next(x for x in lines if x.startswith("  on chip saved.relu:")))
    # the backward reads the activation on its home's slots; the optimizer's own loads of the
    # parameters it updates (in the home's section) sit on their homes' slots, updated in place
    assert lines[at + 1].startswith("    shared by backward pmu"), lines[at : at + 3]
    assert lines[at + 1].endswith("(on the home's slots)")
    at = lines.index(next(x for x in lines if x.startswith("  on chip fc1.weight:")))
    assert lines[at + 1 : at + 3] == [
        "    shared by forward pmu 0 (on the home's slots)",
        "    shared by optimizer pmu 0 (updated in place)",
    ], lines[at : at + 4]
    assert not any(line.startswith("    hand-off") for line in lines)


def test_rdu_test_passes_on_the_co_resident_pef(resident_pef: Path) -> None:
    report = rdu_test(MLP, resident_pef)  # the batch comes from the PEF
    for param in ("fc1.weight", "fc2.bias"):
        assert f"{param}.grad" in judged(report, "backward") & judged(report, "end to end")
        assert param in judged(report, "optimizer")


def test_resume_is_exact_on_the_co_resident_pef(tmp_path: Path, resident_pef: Path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = [str(MLP), "--pef", str(resident_pef), "--ckpt-every", "0"]
    ran = in_process("rdu-run", *common, "--num-steps", "8", "--ckpt-dir", str(straight))
    assert ran.returncode == 0, ran.stderr
    ran = in_process("rdu-run", *common, "--num-steps", "4", "--ckpt-dir", str(split))
    assert ran.returncode == 0, ran.stderr
    resumed = in_process("rdu-run", *common, "--num-steps", "8", "--ckpt-dir", str(split),
                         "--init-ckpt-path", str(split / "last.pt"))  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(split / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 8
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
