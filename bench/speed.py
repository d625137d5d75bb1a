"""Speed of the tools beside torch on the same machine, in the same run.

    python bench/speed.py                 # everything (several minutes)
    python bench/speed.py --quick         # MLP only, one repeat, torch.compile backend "eager"

Three tables, printed and written into ``bench/results.json`` under the key ``"speed"`` (the
other keys belong to the other bench scripts and are kept):

- **compile**: wall time and peak memory (``ru_maxrss`` of the child) of the whole
  ``rdu-compile`` command (training PEF and inference PEF), each in a fresh process, beside
  ``torch.compile`` (inductor, cold cache: a fresh process with a fresh
  ``TORCHINDUCTOR_CACHE_DIR``) compiling the same model's forward + backward; the ratio is
  rdu-compile's wall time over inductor's, both whole processes (imports included: what the user
  waits for). Target: the training PEF in at most 1/4 of inductor's time.
- **emulator**: one training step (forward, backward, optimizer) and one inference batch on the
  emulated fabric (``TrainingSession.step`` / ``InferenceSession.run``, set up like ``rdu-run``)
  beside torch eager on the CPU, same model, same batch, both on one thread (the child process
  gets ``OMP/OPENBLAS/MKL_NUM_THREADS=1`` before numpy and torch load, and
  ``torch.set_num_threads(1)``); medians of repeated runs, of the wall time and of the thread's
  CPU time. Target: at most 3x torch eager, judged on the CPU times (on an idle machine they
  are the wall times; on a busy one they leave out the time other processes took the CPU).
- **scaling**: rdu-compile of the GPT example's training PEF (batch 8, sequence 64) with 2, 4, 8
  layers at hidden 128, and hidden 128, 512, 2048 at 2 layers; wall time and peak memory.
  Targets: within 1.3x of linear in layers (the 8-layer time over the straight line through the
  2- and 4-layer times) and within 1.3x flat in hidden size (slowest over fastest).

Each model is measured again at ``rdu-compile --precision bf16-mixed`` (rows ``bf16-mixed``;
``--no-bf16`` leaves them out): the training PEF's compile beside ``torch.compile`` of the same
step under ``torch.autocast(device_type="cpu", dtype=torch.bfloat16)``, and its emulated
training step beside torch eager under the same autocast, one thread each. The targets are
judged on the fp32 rows; the bf16-mixed ones are figures.

Every row also gives the modelled cycles of the compiled program (one run of every section,
from ``runtime.machine.perf``), so the speed of the tool and of the program sit side by side.
A model whose example is missing or does not compile yet gets a row "not available: <reason>".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
KEY = "speed"
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}
COMPILE_TARGET = 0.25  # rdu-compile (training) / inductor, at most
EMULATOR_TARGET = 3.0  # fabric / torch eager, at most
SCALING_TARGET = 1.3
EMULATOR_TARGET_MODELS = ("mlp", "gpt")
BF16_MIXED = "bf16-mixed"
"""The rows of a model compiled and run at ``rdu-compile --precision bf16-mixed``."""
SCALING_BASE = {"layers": 2, "hidden": 128}
"""The GPT example's point both scaling sweeps go through (the other knob's value)."""
TIMEOUT = 1800.0  # seconds for any one child process
COMPILE_BUDGET = 60.0  # seconds of repeated rdu-compile runs of one PEF


# -- the models --------------------------------------------------------------------------------

# Option spellings a model.py may use for the knobs the benchmark sets (first match wins).
KNOBS: dict[str, tuple[str, ...]] = {
    "layers": ("--layers", "--n-layer", "--n-layers", "--num-layers", "--num-hidden-layers"),
    "hidden": ("--hidden", "--d-model", "--n-embd", "--hidden-size", "--dim", "--embed-dim"),
    "seq": ("--seq-len", "--seq", "--seq-length", "--block-size", "--context", "--n-positions"),
    "vocab": ("--vocab", "--vocab-size", "--n-vocab"),
}


@dataclass(frozen=True)
class Model:
    """A benchmarked model: where its example may live, its batch and the knobs it needs."""

    name: str
    folders: tuple[str, ...]
    batch: int
    knobs: dict[str, int] = field(default_factory=dict)
    preferred: dict[str, int] = field(default_factory=dict)
    """Knobs set when the model.py has an option for them (else its own value is measured,
    and the rows say so)."""
    emulator: bool = True

    def path(self) -> Path | None:
        for folder in self.folders:
            candidate = ROOT / "examples" / folder / "model.py"
            if candidate.exists():
                return candidate
        return None


MODELS: dict[str, Model] = {
    "mlp": Model("mlp", ("mlp",), 64),
    "lenet": Model("lenet", ("lenet",), 64),
    "gpt": Model("gpt", ("gpt",), 8, {"seq": 64}),
    "gpt2": Model(
        "gpt2",
        ("hf_gpt2", "gpt2", "hf-gpt2", "gpt2_hf"),
        8,
        {"seq": 64},
        {"layers": 2, "hidden": 128, "vocab": 1000},
    ),
}


class Unavailable(Exception):
    """A model or measurement that cannot run now; the message is the row's reason."""


def tool(name: str) -> str:
    """The venv's console script ``name`` (next to this Python), else the one on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise Unavailable(f"no {name} command (pip install -e .)")
    return found


# -- child processes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Child:
    """A finished child process: status, wall time, peak memory, output."""

    returncode: int
    seconds: float
    cpu_seconds: float
    """User + system CPU time of the child (less sensitive than wall time to a busy machine)."""
    peak_mb: float
    stdout: str
    stderr: str

    def reason(self) -> str:
        """The child's error in one line (its last non-empty stderr line)."""
        lines = [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]
        text = lines[-1] if lines else f"exit status {self.returncode}"
        return text if len(text) <= 200 else text[:197] + "..."


def run_child(
    argv: Sequence[str], env: dict[str, str] | None = None, timeout: float = TIMEOUT
) -> Child:
    """Run ``argv`` to the end; wall time of the whole command and its ``ru_maxrss``."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdout=out, stderr=err, env=env, cwd=ROOT)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                status = -1
                break
            time.sleep(0.002)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status) if status != -1 else -9
        out.seek(0)
        err.seek(0)
        stderr = err.read()
        if status == -1:
            stderr += f"\ntimed out after {timeout:.0f} s"
        cpu = usage.ru_utime + usage.ru_stime
        return Child(proc.returncode, seconds, cpu, usage.ru_maxrss / 1024, out.read(), stderr)


def child_json(child: Child) -> dict[str, Any]:
    """The JSON document a ``--child`` run prints as its last stdout line."""
    if child.returncode != 0:
        raise Unavailable(child.reason())
    lines = [ln for ln in child.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise Unavailable("the child printed no result")
    return json.loads(lines[-1])


def self_argv(child: str, path: Path, extra: Sequence[str] = (), *args: str) -> list[str]:
    """This script as a ``--child`` process on the model at ``path`` with model options ``extra``
    (passed as one JSON list: a model's options may share names with the benchmark's own)."""
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        child,
        "--model-path",
        str(path),
        "--model-args",
        json.dumps(list(extra)),
        *args,
    ]


# -- what the children run (imports torch; the parent never does) --------------------------------


def _load(model_path: str, extra: list[str], batch: int) -> tuple[Any, argparse.Namespace]:
    from tools.cli import model_namespace
    from tools.model_file import load_model_file

    model_file = load_model_file(model_path)
    args = model_namespace(model_file, extra, {"batch_size": batch, "seed": 0, "epoch": 0})
    args.debug = False
    return model_file, args


def _one_batch(model_file: Any, args: argparse.Namespace) -> tuple[tuple, tuple]:
    """The first training batch of ``data()``, else the example inputs and targets."""
    if model_file.has("data"):
        try:
            return next(iter(model_file.batches("train", args)))
        except StopIteration:
            pass
    targets = model_file.call("example_targets", args) if model_file.has("example_targets") else ()
    return tuple(model_file.call("example_inputs", args)), tuple(targets)


def child_options(model_path: str) -> dict[str, Any]:
    """The model's own options: ``{"--name": default}``."""
    from tools.cli import shared_model_parser
    from tools.model_file import load_model_file

    parser = shared_model_parser(load_model_file(model_path))
    options: dict[str, Any] = {}
    for action in parser._actions:
        for flag in action.option_strings:
            default = action.default
            options[flag] = default if isinstance(default, int | float | str | None) else None
    return options


def child_inductor(
    model_path: str, extra: list[str], batch: int, backend: str, precision: str = "fp32"
) -> dict[str, Any]:
    """``torch.compile`` of forward + loss + backward (under ``precision``'s autocast); the first
    call compiles (cold cache)."""
    import torch

    from compiler.frontend.trace import precision_context

    model_file, args = _load(model_path, extra, batch)
    torch.manual_seed(0)
    module = model_file.call("model", args)
    inputs, targets = _one_batch(model_file, args)
    loss_fn = model_file.function("loss")

    def step(*batch: torch.Tensor) -> torch.Tensor:
        with precision_context(precision):
            outputs = module(*batch[: len(inputs)])
            loss = loss_fn(outputs, *batch[len(inputs) :])
        loss.backward()
        return loss.detach()

    compiled = torch.compile(step, backend=backend)
    started = time.perf_counter()
    compiled(*inputs, *targets)
    first = time.perf_counter() - started
    return {"first_call_seconds": first}


def child_emulator(
    model_path: str,
    extra: list[str],
    train_pef: str | None,
    inference_pef: str | None,
    repeats: int,
    budget: float,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Fabric vs torch eager, one training step and one inference batch, one thread each; torch's
    forward and loss under ``precision``'s autocast (the PEFs' precision)."""
    import resource

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from runtime.pef import read_pef
    from runtime.session import InferenceSession, TrainingSession
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
    result: dict[str, Any] = {"blas": _blas_name(np)}

    def peak_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    fabric: dict[str, Callable[[], object]] = {}
    runs: dict[str, Run] = {}
    for mode, pef in (("train", train_pef), ("inference", inference_pef)):
        if pef is None:
            continue
        run = runs[mode] = Run(model_path, extra, debug=False, pef_path=pef, **opts)
        state, _ = run.initial_state()
        inputs, targets = _one_batch(run.model_file, run.args)
        feed = run.batch(inputs, targets)
        if mode == "train":
            session = TrainingSession(read_pef(pef), state)
            hyper = run.hyperparameters()
            fabric[mode] = lambda s=session, f=feed, h=hyper: s.step(f, h)
        else:
            session = InferenceSession(read_pef(pef), state)
            fabric[mode] = lambda s=session, f=feed: s.run(f)
    result["before_fabric_peak_mb"] = peak_mb()
    for mode, call in fabric.items():
        result[mode] = {"fabric": _median_time(call, repeats, budget)}
    result["runtime_peak_mb"] = peak_mb()

    from compiler.frontend.trace import precision_context  # after the fabric's peak memory

    for mode, run in runs.items():
        torch.manual_seed(0)
        module = run.model_file.call("model", run.args)
        inputs, targets = _one_batch(run.model_file, run.args)
        if mode == "train":
            module.train()
            loss_fn = run.model_file.function("loss")
            if run.model_file.has("optimizer"):
                optimizer = run.model_file.call("optimizer", module.parameters(), run.args)
            else:
                optimizer = torch.optim.SGD(module.parameters(), lr=0.01)

            def train_step(
                m: torch.nn.Module = module,
                o: torch.optim.Optimizer = optimizer,
                lf: Callable[..., torch.Tensor] = loss_fn,
                i: tuple = inputs,
                t: tuple = targets,
            ) -> None:
                o.zero_grad()
                with precision_context(precision):
                    loss = lf(m(*i), *t)
                loss.backward()
                o.step()

            result[mode]["torch"] = _median_time(train_step, repeats, budget)
        else:
            module.eval()

            def infer(m: torch.nn.Module = module, i: tuple = inputs) -> None:
                with torch.no_grad():
                    m(*i)

            result[mode]["torch"] = _median_time(infer, repeats, budget)
    result["threads"] = torch.get_num_threads()
    return result


def _blas_name(np: Any) -> str:
    try:
        config = np.show_config(mode="dicts")
        return str(config["Build Dependencies"]["blas"]["name"])
    except Exception:
        return "unknown"


def _median_time(call: Callable[[], object], repeats: int, budget: float) -> dict[str, float]:
    """Medians of the wall time and the CPU time (this thread's) of ``call``, after one warm-up
    run, over ``repeats`` runs or ``budget`` seconds, whichever ends first (at least one)."""
    started = time.perf_counter()
    call()
    warmup = time.perf_counter() - started
    walls: list[float] = []
    cpus: list[float] = []
    spent = 0.0
    while len(walls) < max(repeats, 1) and (not walls or spent < budget):
        c0, t0 = time.thread_time(), time.perf_counter()
        call()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.thread_time() - c0)
        spent += walls[-1]
    return {
        "median_s": statistics.median(walls),
        "cpu_median_s": statistics.median(cpus),
        "runs": len(walls),
        "warmup_s": warmup,
    }


# -- measurements (the parent) -------------------------------------------------------------------


def model_args(
    model: Model,
    knobs: dict[str, int],
    options: dict[str, Any],
    preferred: dict[str, int] | None = None,
    notes: list[str] | None = None,
) -> list[str]:
    """The command-line options that set ``knobs`` for ``model`` (raises if one is missing),
    and ``preferred`` where the model has an option (else a line in ``notes``)."""
    argv: list[str] = []
    wanted = [(k, v, True) for k, v in knobs.items()]
    wanted += [(k, v, False) for k, v in (preferred or {}).items() if k not in knobs]
    for knob, value, required in wanted:
        flag = next((f for f in KNOBS[knob] if f in options), None)
        if flag is None and required:
            raise Unavailable(
                f"{model.name}'s model.py has no option for {knob} "
                f"(looked for {', '.join(KNOBS[knob])})"
            )
        if flag is None:
            if notes is not None:
                notes.append(f"{knob} as the model.py sets it (no option for {value})")
            continue
        argv += [flag, str(value)]
    return argv


def modelled(pef: Path) -> dict[str, Any]:
    """Modelled cycles of one run of every section and the PEF's size.

    The cycles are the fabric's performance counters (``Fabric.counters``, the model of
    ``runtime/machine/perf.py``), fixed by the configuration: no section needs to run.
    """
    from runtime.fabric import Fabric
    from runtime.pef import read_pef

    program = read_pef(pef)
    clock = program.meta.target.clock_ghz
    cycles = {name: c.cycles for name, c in Fabric(program).counters.items()}
    total = sum(cycles.values())
    return {
        "cycles": total,
        "section_cycles": cycles,
        "modelled_us": total / (clock * 1e3),
        "pef_bytes": pef.stat().st_size,
    }


def rdu_compile(
    path: Path, argv: list[str], batch: int, inference: bool, out: Path, name: str, repeats: int
) -> dict[str, Any]:
    """Median wall time of the whole ``rdu-compile`` command over ``repeats`` fresh processes
    (fewer once they took ``COMPILE_BUDGET`` seconds: a long compile is measured once)."""
    command = [tool("rdu-compile"), str(path), "-b", str(batch), "--output-folder", str(out)]
    command += ["--pef-name", name] + (["--inference"] if inference else []) + argv
    children: list[Child] = []
    while len(children) < max(repeats, 1) and sum(c.seconds for c in children) < COMPILE_BUDGET:
        child = run_child(command)
        if child.returncode != 0:
            raise Unavailable(child.reason())
        children.append(child)
    pef = out / name / f"{name}.pef"
    row = {
        "seconds": statistics.median(c.seconds for c in children),
        "all_seconds": [round(c.seconds, 3) for c in children],
        "cpu_seconds": statistics.median(c.cpu_seconds for c in children),
        "peak_mb": max(c.peak_mb for c in children),
        "pef": str(pef),
    }
    row.update(modelled(pef))
    return row


def inductor(
    path: Path, argv: list[str], batch: int, backend: str, precision: str = "fp32"
) -> dict[str, Any]:
    """torch.compile in a fresh process with a fresh (empty) inductor cache directory."""
    with tempfile.TemporaryDirectory(prefix="inductor-cache-") as cache:
        env = dict(os.environ)
        env["TORCHINDUCTOR_CACHE_DIR"] = cache
        env["TRITON_CACHE_DIR"] = os.path.join(cache, "triton")
        env.pop("TORCHINDUCTOR_FORCE_DISABLE_CACHES", None)
        command = self_argv(
            "inductor", path, argv, "--batch", str(batch), "--backend", backend,
            "--precision", precision,
        )  # fmt: skip
        child = run_child(command, env=env)
        data = child_json(child)
    return {
        "backend": backend,
        "seconds": child.seconds,
        "cpu_seconds": child.cpu_seconds,
        "first_call_seconds": data["first_call_seconds"],
        "peak_mb": child.peak_mb,
    }


def emulator(
    path: Path,
    argv: list[str],
    train_pef: str | None,
    inference_pef: str | None,
    repeats: int,
    budget: float,
    precision: str = "fp32",
) -> dict[str, Any]:
    env = dict(os.environ)
    env.update(ONE_THREAD)
    command = self_argv("emulator", path, argv, "--repeats", str(repeats), "--budget", str(budget))
    command += ["--precision", precision]
    command += ["--train-pef", train_pef] if train_pef else []
    command += ["--inference-pef", inference_pef] if inference_pef else []
    child = run_child(command, env=env)
    data = child_json(child)
    data["process_peak_mb"] = child.peak_mb
    return data


def linearity(seconds: dict[int, float]) -> float | None:
    """How far the largest point is above the straight line through the two smallest.

    ``t(x3) / (t(x2) + (x3 - x2) * (t(x2) - t(x1)) / (x2 - x1))``: 1.0 is exactly linear (fixed
    start-up cost allowed), above 1 is worse than linear. None with fewer than three points.
    """
    if len(seconds) < 3:
        return None
    (x1, t1), (x2, t2), (x3, t3) = sorted(seconds.items())[:3]
    slope = max((t2 - t1) / (x2 - x1), 0.0)
    predicted = t2 + (x3 - x2) * slope
    return t3 / predicted if predicted > 0 else None


def flatness(seconds: dict[int, float]) -> float | None:
    """Slowest over fastest; None with fewer than two points."""
    if len(seconds) < 2:
        return None
    return max(seconds.values()) / min(seconds.values())


# -- the benchmark -----------------------------------------------------------------------------


@dataclass
class Bench:
    opts: argparse.Namespace
    workdir: Path
    compile_rows: list[dict[str, Any]] = field(default_factory=list)
    emulator_rows: list[dict[str, Any]] = field(default_factory=list)
    scaling_rows: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def log(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def argv_for(
        self, model: Model, knobs: dict[str, int], notes: list[str] | None = None
    ) -> list[str]:
        path = model.path()
        assert path is not None
        if not knobs and not model.preferred:
            return []
        if model.name not in self.options:
            child = run_child(self_argv("options", path), timeout=300)
            self.options[model.name] = child_json(child)
        return model_args(model, knobs, self.options[model.name], model.preferred, notes)

    def model(self, model: Model) -> None:
        path = model.path()
        if path is None:
            reason = f"no examples/{model.folders[0]}/model.py yet"
            self.compile_rows.append({"model": model.name, "kind": "training", "error": reason})
            self.emulator_rows.append({"model": model.name, "mode": "train", "error": reason})
            return
        notes: list[str] = []
        try:
            argv = self.argv_for(model, model.knobs, notes)
        except Unavailable as error:
            self.compile_rows.append({"model": model.name, "kind": "training", "error": str(error)})
            return
        pefs: dict[str, str | None] = {}
        kinds = ["training", "inference"] + ([BF16_MIXED] if self.opts.bf16 else [])
        for kind in kinds:
            row: dict[str, Any] = {"model": model.name, "kind": kind, "batch": model.batch}
            row["args"] = argv
            if notes:
                row["notes"] = notes
            name = f"{model.name}-{kind}"
            precision = ["--precision", kind] if kind == BF16_MIXED else []
            self.log(f"[speed] rdu-compile {model.name} ({kind})")
            try:
                row.update(
                    rdu_compile(
                        path, argv + precision, model.batch, kind == "inference", self.workdir,
                        name, self.opts.compile_repeats,
                    )
                )  # fmt: skip
                pefs[kind] = row["pef"]
            except Unavailable as error:
                row["error"] = str(error)
                pefs[kind] = None
            self.compile_rows.append(row)
        rows = {r["kind"]: r for r in self.compile_rows if r["model"] == model.name}
        if self.opts.inductor:
            # the fp32 step's compile beside both fp32 PEFs, the autocast one beside bf16-mixed's
            pairs = (("fp32", ("training", "inference")), (BF16_MIXED, (BF16_MIXED,)))
            for precision, kinds_of in pairs:
                judged = [rows[k] for k in kinds_of if k in rows]
                if not judged or "error" in judged[0]:
                    continue
                self.log(f"[speed] torch.compile ({self.opts.backend}, {precision}) {model.name}")
                try:
                    ind = inductor(path, argv, model.batch, self.opts.backend, precision)
                    for row in judged:
                        row["torch_compile"] = ind
                        if "seconds" in row:
                            row["ratio"] = row["seconds"] / ind["seconds"]
                except Unavailable as error:
                    judged[0]["torch_compile"] = {"error": str(error)}
        if not model.emulator:
            return
        runs: list[tuple[str, str, str | None]] = [("fp32", "training", "inference")]
        if self.opts.bf16:
            runs.append((BF16_MIXED, BF16_MIXED, None))  # no bf16-mixed inference PEF (yet)
        for precision, train_kind, inference_kind in runs:
            train_pef = pefs.get(train_kind)
            inference_pef = pefs.get(inference_kind) if inference_kind else None
            if not (train_pef or inference_pef):
                continue
            self.log(f"[speed] emulator vs torch eager ({precision}) {model.name}")
            try:
                data = emulator(
                    path, argv, train_pef, inference_pef, self.opts.repeats, self.opts.budget,
                    precision,
                )  # fmt: skip
            except Unavailable as error:
                mode = "train" if precision == "fp32" else precision
                self.emulator_rows.append({"model": model.name, "mode": mode, "error": str(error)})
                continue
            for mode, kind in (("train", train_kind), ("inference", inference_kind)):
                if kind and mode in data:
                    self.emulator_rows.append(self.emulator_row(model, data, mode, rows[kind]))

    def emulator_row(
        self, model: Model, data: dict[str, Any], mode: str, compiled: dict[str, Any]
    ) -> dict[str, Any]:
        """The emulator's row of ``mode`` (``train``, ``inference``; a bf16-mixed PEF's
        training step is mode ``bf16-mixed``) from a child's ``data``, beside the compile row."""
        fabric, eager = data[mode]["fabric"], data[mode].get("torch", {})
        row = {
            "model": model.name,
            "mode": mode if compiled["kind"] != BF16_MIXED else BF16_MIXED,
            "batch": model.batch,
            "fabric_ms": fabric["median_s"] * 1e3,
            "torch_ms": eager.get("median_s", float("nan")) * 1e3,
            "fabric_cpu_ms": fabric["cpu_median_s"] * 1e3,
            "torch_cpu_ms": eager.get("cpu_median_s", float("nan")) * 1e3,
            "runs": fabric["runs"],
            "runtime_peak_mb": data["runtime_peak_mb"],
            "threads": data["threads"],
            "blas": data["blas"],
            "cycles": compiled.get("cycles"),
            "modelled_us": compiled.get("modelled_us"),
        }
        if eager:
            row["ratio"] = fabric["median_s"] / eager["median_s"]
            row["cpu_ratio"] = fabric["cpu_median_s"] / eager["cpu_median_s"]
        return row

    def scaling(self) -> None:
        model = MODELS["gpt"]
        path = model.path()
        sweeps = {"layers": self.opts.layers, "hidden": self.opts.hidden}
        done: dict[tuple[str, ...], dict[str, Any]] = {}  # the shared point runs once
        for sweep, values in sweeps.items():
            for value in values:
                row: dict[str, Any] = {"model": model.name, "sweep": sweep, "value": value}
                self.scaling_rows.append(row)
                if path is None:
                    row["error"] = f"no examples/{model.folders[0]}/model.py yet"
                    continue
                knobs = {**model.knobs, **SCALING_BASE, sweep: value}
                row["knobs"] = knobs
                try:
                    argv = self.argv_for(model, knobs)
                    if tuple(argv) not in done:
                        self.log(f"[speed] rdu-compile {model.name} {sweep}={value}")
                        done[tuple(argv)] = rdu_compile(
                            path, argv, model.batch, False, self.workdir,
                            f"{model.name}-{sweep}-{value}", 1,
                        )  # fmt: skip
                    row.update(done[tuple(argv)])
                except Unavailable as error:
                    row["error"] = str(error)

    def verdicts(self) -> dict[str, Any]:
        """Each target: met (True/False) or not measured (None), with the numbers."""
        out: dict[str, Any] = {}
        for row in self.compile_rows:
            if row["kind"] != "training":
                continue
            ind = row.get("torch_compile", {})
            met = None
            if "ratio" in row and ind.get("backend") == "inductor":
                met = row["ratio"] <= COMPILE_TARGET
            out[f"compile/{row['model']}"] = {"ratio": row.get("ratio"), "met": met}
        for row in self.emulator_rows:
            if row["model"] in EMULATOR_TARGET_MODELS and row["mode"] != BF16_MIXED:
                # Judged on CPU time: both sides run on one thread, so their CPU time is their
                # wall time on an idle machine, whatever else the machine is running.
                ratio = row.get("cpu_ratio")
                out[f"emulator/{row['model']}/{row['mode']}"] = {
                    "ratio": ratio,
                    "wall_ratio": row.get("ratio"),
                    "met": None if ratio is None else ratio <= EMULATOR_TARGET,
                }
        for sweep, judge in (("layers", linearity), ("hidden", flatness)):
            seconds = {
                r["value"]: r["seconds"]
                for r in self.scaling_rows
                if r["sweep"] == sweep and "seconds" in r
            }
            value = judge(seconds)
            out[f"scaling/{sweep}"] = {
                "ratio": value,
                "met": None if value is None else value <= SCALING_TARGET,
            }
        return out

    def document(self) -> dict[str, Any]:
        def rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            # The PEFs were in a temporary folder: keep their names only.
            return [{**r, "pef": Path(r["pef"]).name} if "pef" in r else r for r in rows]

        return {
            "machine": machine(),
            "quick": self.opts.quick,
            "compile": rows(self.compile_rows),
            "emulator": self.emulator_rows,
            "scaling": rows(self.scaling_rows),
            "targets": self.verdicts(),
        }


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("torch", "numpy", "xdsl"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:
            versions[package] = "unknown"
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        **versions,
    }


# -- the table ---------------------------------------------------------------------------------


def _f(value: Any, spec: str) -> str:
    """``value`` formatted with ``spec``; "-" (as wide) when missing or NaN."""
    if value is None or value != value:
        width = "".join(c for c in spec.split(".")[0] if c.isdigit())
        return "-".rjust(int(width or 0))
    return format(value, spec)


def _met(met: bool | None) -> str:
    return "" if met is None else ("ok" if met else "MISSED")


def table(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [f"machine: {m['cpu']}, {m['nproc']} CPUs, load {m['loadavg_1m']}, torch {m['torch']}"]
    targets = doc["targets"]
    lines += ["", "compile (whole command, fresh process)"]
    lines.append(
        f"{'model':<8}{'pef':<11}{'rdu s':>8}{'cpu s':>7}{'MB':>6}{'torch.compile s':>17}"
        f"{'cpu s':>7}{'MB':>6}{'ratio':>8}{'cycles':>12}  target <= {COMPILE_TARGET}"
    )
    for r in doc["compile"]:
        if "error" in r:
            lines.append(f"{r['model']:<8}{r['kind']:<11}not available: {r['error']}")
            continue
        tc = r.get("torch_compile", {})
        label = "" if tc.get("backend", "inductor") == "inductor" else f" ({tc['backend']})"
        met = None
        if r["kind"] == "training":
            met = targets.get(f"compile/{r['model']}", {}).get("met")
        lines.append(
            f"{r['model']:<8}{r['kind']:<11}{_f(r['seconds'], '8.2f')}"
            f"{_f(r['cpu_seconds'], '7.2f')}{_f(r['peak_mb'], '6.0f')}"
            f"{_f(tc.get('seconds'), '17.2f')}{_f(tc.get('cpu_seconds'), '7.2f')}"
            f"{_f(tc.get('peak_mb'), '6.0f')}"
            f"{_f(r.get('ratio'), '8.3f')}{r['cycles']:>12}  {_met(met)}{label}"
            + (f" torch.compile: {tc['error']}" if "error" in tc else "")
        )
    for r in doc["compile"]:
        if r["kind"] == "training" and (r.get("args") or r.get("notes")):
            args = " ".join(r.get("args", []))
            lines.append(f"  {r['model']}: {args} {'; '.join(r.get('notes', []))}".rstrip())
    lines += ["", "emulator (one thread each, median; the target is judged on CPU time)"]
    lines.append(
        f"{'model':<8}{'run':<11}{'fabric ms':>10}{'torch ms':>10}{'ratio':>8}{'cpu ms':>9}"
        f"{'torch cpu':>10}{'ratio':>7}{'runs':>6}{'MB':>6}{'cycles':>11}{'model us':>10}"
        f"  target <= {EMULATOR_TARGET}"
    )
    for r in doc["emulator"]:
        if "error" in r:
            lines.append(f"{r['model']:<8}{r['mode']:<11}not available: {r['error']}")
            continue
        met = targets.get(f"emulator/{r['model']}/{r['mode']}", {}).get("met")
        lines.append(
            f"{r['model']:<8}{r['mode']:<11}{_f(r['fabric_ms'], '10.3f')}"
            f"{_f(r['torch_ms'], '10.3f')}{_f(r.get('ratio'), '8.2f')}"
            f"{_f(r.get('fabric_cpu_ms'), '9.3f')}{_f(r.get('torch_cpu_ms'), '10.3f')}"
            f"{_f(r.get('cpu_ratio'), '7.2f')}{r['runs']:>6}"
            f"{_f(r['runtime_peak_mb'], '6.0f')}{_f(r['cycles'], '11d')}"
            f"{_f(r['modelled_us'], '10.2f')}  {_met(met)}"
        )
    if doc["scaling"]:
        lines += ["", "scaling (rdu-compile, training PEF)"]
        lines.append(
            f"{'model':<8}{'sweep':<11}{'value':>6}{'s':>8}{'cpu s':>7}{'MB':>7}{'cycles':>12}"
        )
        for r in doc["scaling"]:
            head = f"{r['model']:<8}{r['sweep']:<11}{r['value']:>6}"
            if "error" in r:
                lines.append(f"{head}  not available: {r['error']}")
            else:
                lines.append(
                    f"{head}{_f(r['seconds'], '8.2f')}{_f(r['cpu_seconds'], '7.2f')}"
                    f"{_f(r['peak_mb'], '7.0f')}{r['cycles']:>12}"
                )
        for sweep, what in (("layers", "linear"), ("hidden", "flat")):
            v = targets.get(f"scaling/{sweep}", {})
            lines.append(
                f"{sweep}: {_f(v.get('ratio'), '.2f')}x of {what} "
                f"(target <= {SCALING_TARGET}) {_met(v.get('met'))}"
            )
    return "\n".join(lines)


def merge_results(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` under ``KEY`` in ``path``, keeping the other scripts' keys (atomically)."""
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            data = {}
        if not isinstance(data, dict):
            data = {}
    data[KEY] = doc
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


# -- command line ------------------------------------------------------------------------------


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="MLP only, one repeat, backend eager")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated, from: %(default)s")
    p.add_argument("--repeats", type=int, default=30, help="emulator/eager runs (median)")
    p.add_argument("--budget", type=float, default=10.0, help="seconds per emulator timing")
    p.add_argument("--compile-repeats", type=int, default=3, help="rdu-compile runs (median)")
    p.add_argument("--backend", default="inductor", help="torch.compile backend")
    p.add_argument("--no-inductor", dest="inductor", action="store_false")
    p.add_argument("--no-scaling", dest="scaling", action="store_false")
    p.add_argument("--no-bf16", dest="bf16", action="store_false", help="no bf16-mixed rows")
    p.add_argument("--layers", default="2,4,8")
    p.add_argument("--hidden", default="128,512,2048")
    p.add_argument("--out", type=Path, default=RESULTS, help="results file (merged)")
    p.add_argument("--keep", type=Path, default=None, help="keep the PEFs in this folder")
    # child modes (the benchmark runs itself in fresh processes)
    p.add_argument("--child", choices=("options", "inductor", "emulator"), help=argparse.SUPPRESS)
    p.add_argument("--model-path", default=None, help=argparse.SUPPRESS)
    p.add_argument("--model-args", default="[]", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--train-pef", default=None, help=argparse.SUPPRESS)
    p.add_argument("--inference-pef", default=None, help=argparse.SUPPRESS)
    p.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.quick:
        opts.models, opts.repeats, opts.compile_repeats = "mlp", 1, 1
        opts.backend, opts.scaling, opts.budget = "eager", False, 1.0
    opts.layers = [int(v) for v in str(opts.layers).split(",") if v]
    opts.hidden = [int(v) for v in str(opts.hidden).split(",") if v]
    return opts


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse(sys.argv[1:] if argv is None else argv)
    if opts.child:
        return run_as_child(opts)
    names = [n for n in opts.models.split(",") if n]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        print(f"speed.py: unknown model(s) {', '.join(unknown)}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="rdu-bench-") as tmp:
        workdir = opts.keep or Path(tmp)
        bench = Bench(opts, workdir)
        for name in names:
            bench.model(MODELS[name])
        if opts.scaling:
            bench.scaling()
        doc = bench.document()
    print(table(doc))
    merge_results(opts.out, doc)
    print(f"\nwrote {opts.out} (key '{KEY}')")
    return 0


def run_as_child(opts: argparse.Namespace) -> int:
    model_path, extra = opts.model_path, list(json.loads(opts.model_args))
    if opts.child == "options":
        result = child_options(model_path)
    elif opts.child == "inductor":
        result = child_inductor(model_path, extra, opts.batch, opts.backend, opts.precision)
    else:
        result = child_emulator(
            model_path, extra, opts.train_pef, opts.inference_pef, opts.repeats, opts.budget,
            opts.precision,
        )  # fmt: skip
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
