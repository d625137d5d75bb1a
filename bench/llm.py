"""A half-billion-parameter LLM on the emulated fabric: compile, rdu-test, 3 SGD steps, torch.

    .venv/bin/python bench/llm.py                     # the 0.5B (many minutes)
    .venv/bin/python bench/llm.py --num-layers 2      # the same widths, 2 of the 24 layers
    .venv/bin/python bench/llm.py --pef P.pef         # an already compiled PEF (same --num-layers)

The model is ``examples/hf_llama --size 0.5b``: Qwen2.5-0.5B's published config
(``Qwen2ForCausalLM``, 24 layers, hidden 896, vocabulary 151,936, tied embeddings; 494M
parameters, random init, no download), plain SGD, batch 1 x 128 hashed word tokens, for
``--arch sn40l``. Each command runs as its own process, one at a time, under an address-space
limit (``--limit-gb``, default 24, the machine: rdu-test peaks at 21 GB), at ``nice`` 10; wall time,
CPU time and peak memory (``ru_maxrss``) of each whole command are recorded:

- ``rdu-compile --arch sn40l``;
- ``rdu-test`` at its defaults (PASS or FAIL);
- ``rdu-run --num-steps 3`` (its losses, from ``metrics.csv``: finite or not);
- torch eager's training step at one thread (forward, loss, backward, ``SGD.step``; the median
  of 3 after one warm-up), beside the emulator's mean step from the ``rdu-run`` row.

Not part of ``make test`` (minutes and gigabytes); ``make bench`` runs it. Prints a table and
writes it under "llm" in bench/results.json (``--num-layers N``: "llm_<N>layers").
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import speed  # bench/speed.py: a script's own folder is on sys.path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples" / "hf_llama" / "model.py"
MODEL_ARGS = ["--size", "0.5b", "--block-size", "128"]
BATCH = 1
ARCH = "sn40l"
STEPS = 3
RESULTS = ROOT / "bench" / "results.json"


def torch_step(model_args: list[str], repeats: int) -> dict[str, Any]:
    """(child) torch eager's training step at one thread: median wall time after a warm-up."""
    import torch

    torch.set_num_threads(1)
    model_file, args = speed._load(str(MODEL), model_args, BATCH)
    (inputs, targets) = speed._one_batch(model_file, args)
    torch.manual_seed(0)
    module = model_file.call("model", args).train()
    loss_fn = model_file.function("loss")
    optimizer = model_file.call("optimizer", module.parameters(), args)
    losses: list[float] = []

    def step() -> None:
        optimizer.zero_grad()
        loss = loss_fn(module(*inputs), *targets)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    step()
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        walls.append(time.perf_counter() - started)
    return {
        "median_s": statistics.median(walls),
        "losses": losses,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _row(done: Any) -> dict[str, Any]:
    return {
        "ok": done.returncode == 0,
        "seconds": round(done.seconds, 2),
        "cpu_seconds": round(done.cpu_seconds, 2),
        "peak_mb": round(done.peak_mb),
        **({} if done.returncode == 0 else {"error": done.reason()}),
    }


def _nice(argv: list[str]) -> list[str]:
    return ["nice", "-n", "10", *argv]


def run(opts: argparse.Namespace, model_args: list[str], folder: Path) -> dict[str, Any]:
    doc: dict[str, Any] = {"model": "examples/hf_llama " + " ".join(model_args), "arch": ARCH}
    doc["limit_gb"] = opts.limit_gb
    pef = opts.pef
    if pef is None:
        argv = [speed.tool("rdu-compile"), str(MODEL), "--arch", ARCH, "-b", str(BATCH)]
        argv += ["--output-folder", str(folder), "--pef-name", "llm", *model_args]
        done = speed.run_child(_nice(argv), timeout=3 * 3600)
        doc["compile"] = _row(done)
        if done.returncode != 0:
            return doc
        pef = folder / "llm" / "llm.pef"
        doc["pef_mb"] = round(pef.stat().st_size / 2**20, 2)
    if not opts.skip_test:
        argv = [speed.tool("rdu-test"), str(MODEL), "--pef", str(pef), *model_args]
        done = speed.run_child(_nice(argv), timeout=3 * 3600)
        doc["rdu_test"] = _row(done)
        verdict = [ln for ln in done.stdout.splitlines() if ln.startswith("rdu-test:")]
        doc["rdu_test"]["verdict"] = verdict[-1] if verdict else None
    ckpt = folder / "ckpt"
    argv = [speed.tool("rdu-run"), str(MODEL), "--pef", str(pef), "--num-steps", str(STEPS)]
    argv += ["--ckpt-dir", str(ckpt), "--ckpt-every", "0", "--log-every", "1", *model_args]
    done = speed.run_child(_nice(argv), timeout=3 * 3600)
    doc["train"] = _row(done)
    if done.returncode == 0:
        with open(ckpt / "metrics.csv", newline="") as f:
            losses = [float(r["loss"]) for r in csv.DictReader(f) if r.get("loss")]
        doc["train"]["losses"] = losses
        doc["train"]["finite"] = bool(losses) and all(math.isfinite(x) for x in losses)
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--repeats", "3"]
    argv += ["--num-layers", str(opts.num_layers)] if opts.num_layers else []
    done = speed.run_child(_nice(argv), env={**os.environ, **speed.ONE_THREAD})
    try:
        doc["torch_step_1thread"] = speed.child_json(done)
    except speed.Unavailable as error:
        doc["torch_step_1thread"] = {"error": str(error)}
    return doc


def table(doc: dict[str, Any]) -> str:
    lines = [f"{doc['model']} --arch {doc['arch']}, each command under ulimit -v "
             f"{doc['limit_gb']} GB"]  # fmt: skip
    for key, label in (("compile", "rdu-compile"), ("rdu_test", "rdu-test"), ("train", "rdu-run")):
        r = doc.get(key)
        if r is None:
            continue
        what = "" if r["ok"] else f"  FAILED: {r['error']}"
        if key == "rdu_test" and r.get("verdict"):
            what += "  " + r["verdict"][:60]
        if key == "train" and "losses" in r:
            what += f"  {STEPS} SGD steps, losses {[round(x, 3) for x in r['losses']]}"
            what += " finite" if r["finite"] else " NOT FINITE"
        lines.append(
            f"{label:<12}{r['seconds']:>8.1f} s{r['cpu_seconds']:>8.1f} s CPU"
            f"{r['peak_mb'] / 1024:>6.2f} GB peak{what}"
        )
    t = doc.get("torch_step_1thread", {})
    if "median_s" in t:
        lines.append(
            f"torch eager step (1 thread): {t['median_s']:.2f} s, {t['peak_mb'] / 1024:.2f} GB peak"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pef", type=Path, default=None, help="a compiled PEF (skip compiling)")
    parser.add_argument("--num-layers", type=int, default=None, help="of the 24 (scaling)")
    parser.add_argument(
        "--limit-gb", type=float, default=24.0, help="address space a command (rdu-test: 21 GB)"
    )
    parser.add_argument("--skip-test", action="store_true", help="no rdu-test row")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (merged)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    model_args = [*MODEL_ARGS]
    if opts.num_layers:
        model_args += ["--num-layers", str(opts.num_layers)]
    if opts.child:
        print(json.dumps(torch_step(model_args, opts.repeats)))
        return 0
    limit = int(opts.limit_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # inherited by every command
    with tempfile.TemporaryDirectory(prefix="rdu-bench-llm-") as tmp:
        doc = run(opts, model_args, Path(tmp))
    doc["machine"] = speed.machine()
    print(table(doc))
    key = "llm" if not opts.num_layers else f"llm_{opts.num_layers}layers"
    data: dict[str, Any] = json.loads(opts.out.read_text()) if opts.out.exists() else {}
    data[key] = doc
    tmp_out = opts.out.with_name(f".{opts.out.name}.{os.getpid()}.tmp")
    tmp_out.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_out, opts.out)
    print(f"\nwrote {opts.out} (key '{key}')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
