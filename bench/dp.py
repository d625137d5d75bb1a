"""Data-parallel throughput: MLP training steps per second with 1 and 2 ranks on this machine.

    .venv/bin/python bench/dp.py [--batches 16] [--steps 400] [--repeats 4]

For each per-rank batch, compiles examples/mlp with ``--data-parallel``, trains it with
``rdu-run --data-parallel --world-size N`` for N = 1 and 2, and reads the throughput rdu-run
reports (training steps only: start-up, evaluation and checkpoints are left out); the best of
``--repeats`` runs. Each rank trains its own batch, so a step of 2 ranks trains twice the
samples of a step of 1: the speed-up is in samples per second. Every rank runs with
``OMP_NUM_THREADS=1`` (what torchrun sets for several ranks a machine), so that 1 and 2 ranks
do the same work a rank. The load average is recorded too: on a shared machine the ranks, which
wait for each other at every step, suffer most from other processes. (Larger batches make the
MLP's epochs, hence its ``data()`` calls, so short that loading the digits dominates a step.)

Prints one row a batch and world size and writes them under "data_parallel" in
bench/results.json (other benchmarks keep their own keys there).
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
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env)
    if result.returncode != 0:
        sys.exit(f"bench/dp.py: {' '.join(argv[:2])} failed: {result.stderr.strip()}")
    return result.stdout


def measure(pef: Path, ranks: int, steps: int) -> dict[str, float]:
    """Steps and samples per second of one ``rdu-run --world-size ranks`` training run."""
    with tempfile.TemporaryDirectory() as ckpt:
        options = ["--data-parallel", "--world-size", str(ranks), "--num-steps", str(steps)]
        options += ["--ckpt-every", "0", "--log-every", str(steps), "--ckpt-dir", ckpt]
        out = run(str(BIN / "rdu-run"), str(MLP), "--pef", str(pef), *options)
    match = RATE.search(out)
    if match is None:
        sys.exit(f"bench/dp.py: no throughput line in rdu-run's output:\n{out}")
    return {"steps_per_s": float(match.group(3)), "samples_per_s": float(match.group(4))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="16", help="per-rank batches, comma-separated")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=4, help="best of this many runs")
    args = parser.parse_args()

    out = ROOT / "out" / "bench"
    load_before = os.getloadavg()[0]
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        name = f"mlp-dp-b{batch}"
        compile_args = ["--data-parallel", "-b", str(batch), "--output-folder", str(out)]
        run(str(BIN / "rdu-compile"), str(MLP), *compile_args, "--pef-name", name)
        pef = out / name / f"{name}.pef"
        for ranks in (1, 2):
            runs = [measure(pef, ranks, args.steps) for _ in range(args.repeats)]
            best = max(runs, key=lambda r: r["steps_per_s"])
            rows.append({"batch_per_rank": batch, "ranks": ranks, **best})
    load_after = os.getloadavg()[0]

    cores = os.cpu_count()
    print(f"data-parallel MLP 64-128-10, {args.steps} steps, best of {args.repeats}, {cores} cores")
    print(f"load average {load_before:.1f} before, {load_after:.1f} after")
    print(f"{'batch/rank':>10} {'ranks':>5} {'steps/s':>9} {'samples/s':>10} {'speed-up':>9}")
    for row in rows:
        base = next(
            r for r in rows if r["batch_per_rank"] == row["batch_per_rank"] and r["ranks"] == 1
        )
        row["speedup"] = round(row["samples_per_s"] / base["samples_per_s"], 2)
        print(
            f"{row['batch_per_rank']:>10} {row['ranks']:>5} {row['steps_per_s']:>9.1f} "
            f"{row['samples_per_s']:>10.0f} {row['speedup']:>8.2f}x"
        )

    doc = {
        "model": "examples/mlp (64-128-10)",
        "steps": args.steps,
        "repeats": args.repeats,
        "omp_num_threads": 1,
        "rows": rows,
        "cpus": cores,
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
    results["data_parallel"] = doc  # the other scripts' keys stay
    tmp = RESULTS.with_name(f".{RESULTS.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, RESULTS)
    print(f"wrote {RESULTS.relative_to(ROOT)} (data_parallel)")


if __name__ == "__main__":
    main()
