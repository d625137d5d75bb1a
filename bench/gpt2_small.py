"""GPT-2 small on the emulated fabric: one training step beside torch eager, at 1 and 2 threads.

    .venv/bin/python bench/gpt2_small.py                    # compile, then measure (minutes)
    .venv/bin/python bench/gpt2_small.py --pef P.pef        # measure an already compiled PEF
    .venv/bin/python bench/gpt2_small.py --compile-only     # the compile rows (steps kept)

The model is ``examples/hf_gpt2 --size small --dropout 0``: ``transformers``' ``GPT2Config()``
(12 layers, hidden 768, vocabulary 50,257; 124M parameters, no download), batch 1 x 128
tokens, AdamW, compiled with ``rdu-compile --arch sn40l`` (wall time and peak memory of the
whole command are recorded) beside ``torch.compile`` (inductor, cold cache, forward and
backward: bench/speed.py's child) in the same run, target at most 0.5x of it and 3 GB peak;
then rdu-compile again at 2 and 6 blocks (``--n-layer``), the 12-block time within 1.3x of the
line through those two (``speed.linearity``). Then, for 1 and 2 threads, two fresh processes
each (so that each peak memory is its own): the emulator's training step
(``TrainingSession.step``, set up like ``rdu-run``) and torch eager's (forward, loss, backward,
``AdamW.step``), with ``OMP/OPENBLAS/MKL_NUM_THREADS`` set before numpy and torch load and
``torch.set_num_threads``; medians of the wall time and of the process's CPU time over
``--repeats`` steps after one warm-up step; peak memory is ``ru_maxrss``. The emulator uses
the threads of numpy's BLAS (``runtime.fabric.host_threads``) for its matmuls and a pool of as
many for its elementwise units' blocks. Target: the emulator's step within 2x of torch eager's
at the same thread count.

Prints a table and writes it under "gpt2_small" in bench/results.json (other benchmarks keep
their own keys there).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import speed  # bench/speed.py: a script's own folder is on sys.path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples" / "hf_gpt2" / "model.py"
MODEL_ARGS = ["--size", "small", "--dropout", "0", "--block-size", "128"]
BATCH = 1
ARCH = "sn40l"
RESULTS = ROOT / "bench" / "results.json"
KEY = "gpt2_small"
TARGET = 2.0  # emulator step / torch eager step, at most, at the same thread count
THREADS = (1, 2)
COMPILE_TARGET = 0.5  # rdu-compile / torch.compile (inductor, cold), at most
COMPILE_PEAK_MB = 3000.0  # rdu-compile's peak memory, at most
LAYERS = (2, 6, 12)
"""The compile scaling rows (``--n-layer``, hidden 768); 12 is the compile measured anyway."""


def thread_env(threads: int) -> dict[str, str]:
    return {**os.environ, **{name: str(threads) for name in speed.ONE_THREAD}}


# -- what the children run ----------------------------------------------------------------------


def _median_step(call: Callable[[], object], repeats: int) -> dict[str, float]:
    """Medians of the wall and process CPU time of ``call`` after one warm-up call."""
    started = time.perf_counter()
    call()
    warmup = time.perf_counter() - started
    walls, cpus = [], []
    for _ in range(max(repeats, 1)):
        c0, t0 = time.process_time(), time.perf_counter()
        call()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {
        "median_s": statistics.median(walls),
        "cpu_median_s": statistics.median(cpus),
        "runs": len(walls),
        "warmup_s": warmup,
    }


def child(side: str, pef: str, threads: int, repeats: int) -> dict[str, Any]:
    """One side's training step at ``threads`` threads (this process's environment set them)."""
    import resource

    import torch

    torch.set_num_threads(threads)
    model_file, args = speed._load(str(MODEL), MODEL_ARGS, BATCH)
    inputs, targets = speed._one_batch(model_file, args)
    if side == "fabric":
        from runtime.pef import read_pef
        from runtime.session import TrainingSession
        from tools.rdu_run import Run

        opts = {
            "seed": 0,
            "init_ckpt_path": None,
            "lr": None,
            "momentum": None,
            "weight_decay": None,
            "ckpt_dir": None,
            "results_dir": None,
        }
        run = Run(str(MODEL), MODEL_ARGS, debug=False, pef_path=pef, **opts)
        state, _ = run.initial_state()
        feed = run.batch(inputs, targets)
        session = TrainingSession(read_pef(pef), state)
        del state
        hyper = run.hyperparameters()
        result = _median_step(lambda: session.step(feed, hyper), repeats)
        result["loss"] = session.step(feed, hyper).loss
        result["host_threads"] = session.fabric.threads  # the emulator's pool (BLAS: its own)
    else:
        torch.manual_seed(0)
        module = model_file.call("model", args).train()
        loss_fn = model_file.function("loss")
        optimizer = model_file.call("optimizer", module.parameters(), args)

        def train_step() -> None:
            optimizer.zero_grad()
            loss_fn(module(*inputs), *targets).backward()
            optimizer.step()

        result = _median_step(train_step, repeats)
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["threads"] = threads
    result["loadavg_1m"] = round(os.getloadavg()[0], 2)  # other jobs on the machine
    return result


# -- the parent -----------------------------------------------------------------------------------


def compile_pef(folder: Path, extra: tuple[str, ...] = ()) -> tuple[Path, dict[str, Any]]:
    """rdu-compile of the model (``extra``: more model options), whole command, fresh process:
    its PEF and its wall time, CPU time and peak memory."""
    name = "-".join(["gpt2-small", *(a.lstrip("-") for a in extra)])
    argv = [speed.tool("rdu-compile"), str(MODEL), "--arch", ARCH, "-b", str(BATCH)]
    argv += ["--output-folder", str(folder), "--pef-name", name, *MODEL_ARGS, *extra]
    done = speed.run_child(argv, timeout=3 * 3600)
    if done.returncode != 0:
        sys.exit(f"bench/gpt2_small.py: rdu-compile failed: {done.reason()}")
    row = {"seconds": done.seconds, "cpu_seconds": done.cpu_seconds, "peak_mb": done.peak_mb}
    return folder / name / f"{name}.pef", row


def compile_rows(folder: Path) -> tuple[Path, dict[str, Any]]:
    """The compile of GPT-2 small beside torch.compile's cold compile of the same model
    (bench/speed.py's inductor child, in the same run), and the scaling rows: rdu-compile at
    ``LAYERS`` blocks, the largest judged against the line through the two smallest."""
    pef, row = compile_pef(folder)
    row["loadavg_1m"] = os.getloadavg()[0]
    print(f"[gpt2_small] rdu-compile {row['seconds']:.1f} s; torch.compile", file=sys.stderr)
    row["torch_compile"] = speed.inductor(MODEL, MODEL_ARGS, BATCH, "inductor")
    row["ratio"] = row["seconds"] / row["torch_compile"]["seconds"]
    row["met"] = row["ratio"] <= COMPILE_TARGET and row["peak_mb"] <= COMPILE_PEAK_MB
    scaling: dict[int, dict[str, Any]] = {max(LAYERS): row}
    for layers in LAYERS:
        if layers not in scaling:
            print(f"[gpt2_small] rdu-compile --n-layer {layers}", file=sys.stderr)
            scaling[layers] = compile_pef(folder, ("--n-layer", str(layers)))[1]
    row["scaling"] = [
        {"layers": n, **{k: r[k] for k in ("seconds", "cpu_seconds", "peak_mb")}}
        for n, r in sorted(scaling.items())
    ]
    linear = speed.linearity({n: r["seconds"] for n, r in scaling.items()})
    row["linearity"] = linear
    row["linearity_met"] = None if linear is None else linear <= speed.SCALING_TARGET
    return pef, row


def measure(pef: Path, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for threads in THREADS:
        row: dict[str, Any] = {"threads": threads}
        for side in ("fabric", "torch"):
            argv = [sys.executable, str(Path(__file__).resolve()), "--child", side]
            argv += ["--pef", str(pef), "--threads", str(threads), "--repeats", str(repeats)]
            row[side] = speed.child_json(speed.run_child(argv, env=thread_env(threads)))
        row["ratio"] = row["fabric"]["median_s"] / row["torch"]["median_s"]
        row["cpu_ratio"] = row["fabric"]["cpu_median_s"] / row["torch"]["cpu_median_s"]
        row["met"] = row["ratio"] <= TARGET
        rows.append(row)
    return rows


def table(doc: dict[str, Any]) -> str:
    lines = [f"machine: {doc['machine']['cpu']}, {doc['machine']['nproc']} CPUs, "
             f"load {doc['machine']['loadavg_1m']}"]  # fmt: skip
    c = doc.get("compile")
    if c:
        tc = c["torch_compile"]
        lines.append(
            f"rdu-compile --arch {ARCH}: {c['seconds']:.1f} s ({c['cpu_seconds']:.1f} s CPU), "
            f"{c['peak_mb']:.0f} MB peak; torch.compile (inductor, cold): {tc['seconds']:.1f} s "
            f"({tc['cpu_seconds']:.1f} s CPU), {tc['peak_mb']:.0f} MB; ratio {c['ratio']:.2f} "
            f"(target <= {COMPILE_TARGET}, peak <= {COMPILE_PEAK_MB:.0f} MB) "
            + ("ok" if c["met"] else "MISSED")
        )
        lines.append(f"{'layers':>7}{'rdu s':>8}{'cpu s':>8}{'MB':>7}  (hidden 768)")
        for r in c["scaling"]:
            lines.append(
                f"{r['layers']:>7}{r['seconds']:>8.1f}{r['cpu_seconds']:>8.1f}{r['peak_mb']:>7.0f}"
            )
        linear = c["linearity"]
        lines.append(
            f"layers: {'-' if linear is None else format(linear, '.2f')}x of linear (target <= "
            f"{speed.SCALING_TARGET}) " + ("ok" if c["linearity_met"] else "MISSED")
        )
    lines.append("")
    lines.append("one training step, GPT-2 small (124M), batch 1 x 128, median")
    lines.append(
        f"{'threads':>7}{'fabric s':>10}{'cpu s':>8}{'MB':>7}{'torch s':>9}{'cpu s':>8}"
        f"{'MB':>7}{'ratio':>7}{'cpu':>6}  target <= {TARGET}"
    )
    for r in doc["steps"]:
        f, t = r["fabric"], r["torch"]
        lines.append(
            f"{r['threads']:>7}{f['median_s']:>10.3f}{f['cpu_median_s']:>8.3f}"
            f"{f['peak_mb']:>7.0f}{t['median_s']:>9.3f}{t['cpu_median_s']:>8.3f}"
            f"{t['peak_mb']:>7.0f}{r['ratio']:>7.2f}{r['cpu_ratio']:>6.2f}  "
            + ("ok" if r["met"] else "MISSED")
        )
    return "\n".join(lines)


def earlier_doc(path: Path) -> dict[str, Any]:
    """What ``path`` holds under ``KEY`` from an earlier run (none: {})."""
    try:
        doc = json.loads(path.read_text()).get(KEY, {})
    except (OSError, json.JSONDecodeError, AttributeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def merge_results(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` under ``KEY`` in ``path``, keeping the other scripts' keys (atomically)."""
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            data = {}
    data = data if isinstance(data, dict) else {}
    data[KEY] = doc
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pef", type=Path, default=None, help="a compiled PEF (skip compiling)")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps a side (median)")
    parser.add_argument(
        "--compile-only", action="store_true", help="the compile rows only (no training steps)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (merged)")
    parser.add_argument("--child", choices=("fabric", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        print(json.dumps(child(opts.child, str(opts.pef), opts.threads, opts.repeats)))
        return 0
    doc: dict[str, Any] = {"model": "examples/hf_gpt2 " + " ".join(MODEL_ARGS), "arch": ARCH}
    with tempfile.TemporaryDirectory(prefix="rdu-bench-gpt2-") as tmp:
        pef = opts.pef
        if pef is None:
            pef, doc["compile"] = compile_rows(Path(tmp))
        if opts.compile_only:  # the steps of the last full run stay, with its machine line
            earlier = earlier_doc(opts.out)
            doc["steps"] = earlier.get("steps", [])
            doc["steps_machine"] = earlier.get("steps_machine", earlier.get("machine"))
        else:
            doc["steps"] = measure(pef, opts.repeats)
    doc["machine"] = speed.machine()
    print(table(doc))
    merge_results(opts.out, doc)
    print(f"\nwrote {opts.out} (key '{KEY}')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
