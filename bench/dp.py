"""Data-parallel throughput: MLP training steps per second with 1 and 2 ranks on this machine.

    .venv/bin/python bench/dp.py [--steps 400] [--batch 16] [--repeats 2]

Compiles examples/mlp with ``--data-parallel`` (batch 16 a rank), trains it with
``rdu-run --data-parallel --world-size N`` for N = 1 and 2, and reads the throughput rdu-run
reports (training steps only: start-up, evaluation and checkpoints are left out). Each rank
processes its own batch, so a step of 2 ranks trains twice the samples of a step of 1.
Prints one row a world size and writes them under "data_parallel" in bench/results.json
(other benchmarks keep their own keys there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MLP = ROOT / "examples" / "mlp" / "model.py"
RESULTS = ROOT / "bench" / "results.json"
RATE = re.compile(r"(\d+) steps in ([0-9.]+) s: ([0-9.]+) steps/s, (\d+) samples/s on (\d+) rank")


def run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"bench/dp.py: {' '.join(argv[:2])} failed: {result.stderr.strip()}")
    return result.stdout


def measure(pef: Path, ranks: int, steps: int) -> dict[str, float]:
    """Steps and samples per second of one ``rdu-run --world-size ranks`` training run."""
    with tempfile.TemporaryDirectory() as ckpt:
        out = run(
            str(BIN / "rdu-run"),
            str(MLP),
            "--pef",
            str(pef),
            "--data-parallel",
            "--world-size",
            str(ranks),
            "--num-steps",
            str(steps),
            "--ckpt-every",
            "0",
            "--log-every",
            str(steps),
            "--ckpt-dir",
            ckpt,
        )
    match = RATE.search(out)
    if match is None:
        sys.exit(f"bench/dp.py: no throughput line in rdu-run's output:\n{out}")
    return {"steps_per_s": float(match.group(3)), "samples_per_s": float(match.group(4))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=16, help="batch of one rank")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs")
    args = parser.parse_args()

    out = ROOT / "out" / "bench"
    compile_args = ["--data-parallel", "-b", str(args.batch), "--output-folder", str(out)]
    run(str(BIN / "rdu-compile"), str(MLP), *compile_args, "--pef-name", "mlp-dp")
    pef = out / "mlp-dp" / "mlp-dp.pef"
    rows = {}
    for ranks in (1, 2):
        runs = [measure(pef, ranks, args.steps) for _ in range(args.repeats)]
        rows[str(ranks)] = max(runs, key=lambda r: r["steps_per_s"])
    base = rows["1"]["samples_per_s"]
    title = f"data-parallel MLP 64-128-10, batch {args.batch} a rank, {args.steps} steps"
    print(f"{title}, {os.cpu_count()} cores")
    print(f"{'ranks':>5} {'steps/s':>9} {'samples/s':>10} {'speed-up':>9}")
    for ranks, row in rows.items():
        speedup = row["samples_per_s"] / base
        print(
            f"{ranks:>5} {row['steps_per_s']:>9.1f} {row['samples_per_s']:>10.0f} {speedup:>8.2f}x"
        )

    doc = {
        "model": "examples/mlp (64-128-10)",
        "batch_per_rank": args.batch,
        "steps": args.steps,
        "ranks": rows,
        "cpus": os.cpu_count(),
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
    results["data_parallel"] = doc  # the other scripts' keys stay
    tmp = RESULTS.with_name(f".{RESULTS.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, RESULTS)
    print(f"wrote {RESULTS.relative_to(ROOT)} (data_parallel)")


if __name__ == "__main__":
    main()
