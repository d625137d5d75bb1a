"""How well the mapping uses the fabric: modelled training steps against an ideal computed
without our cost model.

    .venv/bin/python bench/mapping.py [--targets sn10,sn40l]

For each model (MLP at batch 64 and 256, GPT and HF GPT-2 at batch 8) and target, compiles the
training step in this process as rdu-compile does at its defaults (``-b`` aside) and prints:
FLOPs ours (the performance model's, every section) against torch's (``FlopCounterMode`` over
forward and backward plus the optimizer's update, ``compiler/ideal.py``), the modelled step
(``runtime/machine/perf.py``), the ideal without and with residency and the modelled time over
each, and the most PCUs and PMUs any one section uses. Also the compile time and what the ideal
(torch running the step once more) adds to it. Writes the rows under "mapping" in
bench/results.json (other benchmarks keep their own keys there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.driver import compile_in_memory  # noqa: E402
from compiler.ideal import step_ideal  # noqa: E402
from compiler.report import section_models  # noqa: E402
from compiler.targets import get_target  # noqa: E402
from runtime.machine.perf import si  # noqa: E402
from tools.rdu_compile import model_spec  # noqa: E402

RESULTS = ROOT / "bench" / "results.json"
MODELS = (("MLP", "mlp", 64), ("MLP", "mlp", 256), ("GPT", "gpt", 8), ("HF GPT-2", "hf_gpt2", 8))
"""(label, example, batch)."""


def measure(example: str, batch: int, arch: str) -> dict[str, Any]:
    """One row: compile the training step of ``examples/<example>`` for ``arch``."""
    target = get_target(arch)
    path = str(ROOT / "examples" / example / "model.py")
    _, spec = model_spec(path, [], False, batch, 0, False, target)
    started = time.perf_counter()
    program = compile_in_memory(spec, inference=False, target=target)
    compiled = time.perf_counter()
    ideal = step_ideal(spec, program, target)
    ideal_seconds = time.perf_counter() - compiled
    models = section_models(program)
    modelled = sum(m.seconds for m in models)
    flops = sum(m.flops for m in models)
    return {
        "target": arch,
        "sections": len(models),
        "flops": flops,
        "flop_counter_flops": ideal.flops,
        "flops_vs_flop_counter": round(flops / ideal.flops - 1, 4),
        "modelled_s": modelled,
        "ideal_s": ideal.seconds,
        "resident_ideal_s": ideal.resident_seconds,
        "resident": ideal.resident,
        "of_ideal": round(modelled / ideal.seconds, 2),
        "of_resident_ideal": round(modelled / ideal.resident_seconds, 2),
        "pcus_used": max(m.pcus_used for m in models),
        "pcus": models[0].pcus_available,
        "pmus_used": max(m.pmus_used for m in models),
        "pmus": models[0].pmus_available,
        "bounds": sorted({m.bound for m in models}),
        "compile_s": round(compiled - started, 2),
        "ideal_compute_s": round(ideal_seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="sn10,sn40l", help="comma-separated")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    rows = []
    for label, example, batch in MODELS:
        for arch in args.targets.split(","):
            rows.append({"model": f"{label} b{batch}", **measure(example, batch, arch)})
    load_after = os.getloadavg()[0]
    print(
        f"{'training step':<14}{'target':<7}{'FLOPs ours':>11}{'vs torch':>9}{'modelled':>10}"
        f"{'ideal':>10}{'resident':>10}{'of ideal':>9}{'of res.':>9}{'PCUs':>10}{'PMUs':>10}"
        f"{'compile':>9}{'ideal':>7}"
    )
    for r in rows:
        pcus, pmus = f"{r['pcus_used']}/{r['pcus']}", f"{r['pmus_used']}/{r['pmus']}"
        print(
            f"{r['model']:<14}{r['target']:<7}{si(r['flops'], ''):>11}"
            f"{r['flops_vs_flop_counter']:>+9.1%}{si(r['modelled_s'], 's'):>10}"
            f"{si(r['ideal_s'], 's'):>10}{si(r['resident_ideal_s'], 's'):>10}"
            f"{r['of_ideal']:>8.1f}x{r['of_resident_ideal']:>8.1f}x"
            f"{pcus:>10}{pmus:>10}"
            f"{r['compile_s']:>8.1f}s{r['ideal_compute_s']:>6.1f}s"
        )
    print(f"load average {load_before:.1f} before, {load_after:.1f} after ({os.cpu_count()} cores)")
    doc = {
        "rows": rows,
        "cpus": os.cpu_count(),
        "load_average": [round(load_before, 2), round(load_after, 2)],
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    results: dict = {}
    if RESULTS.exists():
        try:
            results = json.loads(RESULTS.read_text())
        except json.JSONDecodeError:
            results = {}
    results = results if isinstance(results, dict) else {}
    results["mapping"] = doc  # the other scripts' keys stay
    tmp = RESULTS.with_name(f".{RESULTS.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, RESULTS)
    print(f"wrote {RESULTS.relative_to(ROOT)} (mapping)")


if __name__ == "__main__":
    main()
