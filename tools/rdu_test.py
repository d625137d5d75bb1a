"""rdu-test: run one batch on the CPU with torch and on the emulated fabric; compare.

    rdu-test examples/mlp/model.py --pef out/mlp/mlp.pef [--rtol R] [--atol A] [--torch-error C]
        [--json]

A training PEF is judged section by section, each on torch's values of its own inputs
(``tools/reference.py``), so an error is measured where it is made:

- ``forward``: the batch and the weights in; the loss, outputs, updated buffers and every
  activation the backward reads (``saved.*``) out;
- ``backward``: torch's saved activations in; every parameter gradient out;
- ``optimizer``: torch's gradients and optimizer state in; parameters and state after the step;
- ``end to end``: a whole step on the fabric against eager torch (the loss, outputs, gradients
  and buffers), and the state after it against torch's optimizer applied to the fabric's own
  gradients (so AdamW's division of tiny, noisy gradients by their own size is not counted).

torch draws the fabric's dropout masks (``tools/fabric_random.py``) and runs its math attention.
Every tensor is judged by ``tools.tolerance.compare`` (the rule and the defaults are there and in
the README), its limit including torch's own float32 error: each section's computation, and the
whole step, run again in float64 (``tools.reference``); a tensor that passes only by that part
is marked ``ok (torch's own float32 error)``. An inference PEF: the outputs of the forward
section. Output: one line a tensor, worst first, then a one-line verdict per section; exit
status 1 when a section fails.
"""

from __future__ import annotations

import json
from typing import Any

import click
import numpy as np

from tools.cli import MODEL_COMMAND_SETTINGS, OneLineCommand, ToolError, guarded, print_help
from tools.tolerance import (
    NO_ERROR,
    Comparison,
    TorchError,
    cancelled,
    compare,
    float_error,
    scale_of,
    through_bf16,
    tolerance_for,
)

END_TO_END = "end to end"
"""The name of the whole-step comparison among the sections."""
SECTION_ORDER = {"forward": 0, "backward": 1, "optimizer": 2, END_TO_END: 3}


def _judge(
    section: str,
    got: dict[str, np.ndarray],
    expected: dict[str, np.ndarray],
    roles: dict[str, str],
    before: dict[str, np.ndarray],
    overrides: dict[str, float | None],
    scales: dict[str, float] | None = None,
    errors: dict[str, TorchError] | None = None,
    bf16: bool = False,
) -> list[Comparison]:
    """Every tensor of ``expected`` judged against the fabric's value in ``got`` (``scales``:
    forward values' operand sizes, see ``SectionCase.scales``; ``errors``: torch's own float32
    error of each, ``SectionCase.errors``)."""
    rows = []
    for name, want in expected.items():
        if name not in got:
            raise ToolError(f"internal: the fabric gave no {name} in {section}")
        role = roles.get(name, "")
        scale, relative_to = scale_of(role, name, expected, before)
        dtype = np.asarray(want).dtype
        tol = tolerance_for(dtype, overrides if dtype == np.float32 else None)
        if bf16 and dtype == np.float32:
            tol = through_bf16(tol)
        if scales and name in scales:
            if role != "gradient":
                scale = scales[name]
            elif cancelled(want, scales[name], tol):  # noise at its terms' resolution
                scale = max(scale or 0.0, scales[name])
        rows.append(
            compare(
                name,
                got[name],
                want,
                scale=scale,
                relative_to=relative_to,
                tolerance=tol,
                section=section,
                torch_error=(errors or {}).get(name, NO_ERROR),
            )
        )
    return rows


def check_against_torch(
    run: Any, overrides: dict[str, float | None] | None = None, seed: int = 0
) -> list[Comparison]:
    """Compare one batch of ``run`` (an rdu_run.Run) on the fabric with torch on the CPU: every
    section on torch's inputs, then (training) a whole step end to end."""
    from runtime.fabric import Fabric
    from runtime.session import rng_seed_value
    from tools.reference import float64_values, pef_precision, section_cases, trace_joint

    overrides = overrides or {}
    program = run.program
    bf16 = pef_precision(program) != "fp32"  # forward and backward computed through bf16
    roles = {s.name: s.role for s in program.meta.symbols}
    state, step = run.initial_state()
    hyper = {} if run.is_inference else run.hyperparameters()
    split = "test" if run.is_inference else "train"
    inputs, targets = next(iter(run.batches(split, 0)))
    feed = run.batch(inputs, targets)
    joint, wide = None, None
    if not run.is_inference:
        joint = trace_joint(run)
        rng_seed = rng_seed_value(seed, step)
        start = {**state, **feed, "rng_seed": np.asarray(rng_seed, dtype=np.int64)}
        wide = float64_values(joint, program, start, rng_seed)  # the whole step, exactly
    cases = section_cases(run, state, step, feed, hyper, seed, joint, wide)
    fabric = Fabric(program)
    rows: list[Comparison] = []
    scales = {k: v for case in cases for k, v in case.scales.items()}
    while cases:  # each case dropped once judged: the end to end below needs the memory
        case = cases.pop(0)
        got = case.run(fabric)
        through = bf16 and case.kind in ("forward", "backward")
        rows += _judge(
            case.kind,
            got,
            case.expected,
            roles,
            state,
            overrides,
            case.scales,
            case.errors,
            bf16=through,
        )
        del case, got
    if not run.is_inference:
        assert wide is not None
        rows += _end_to_end(
            run, joint, state, step, (inputs, targets), feed, hyper, seed, overrides, scales, wide
        )
    return rows


def _end_to_end(
    run: Any,
    joint: Any,
    state: dict[str, np.ndarray],
    step: int,
    batch: tuple[tuple, tuple],
    feed: dict[str, np.ndarray],
    hyper: dict[str, float],
    seed: int,
    overrides: dict[str, float | None],
    scales: dict[str, float],
    wide: dict[str, np.ndarray],
) -> list[Comparison]:
    """One step of the fabric's session against eager torch (the fabric's dropout masks);
    ``scales``: the per-section reference's (forward values' operand sizes, summed gradients'
    terms' sizes); ``wide``: the
    step in float64 (eager torch's own error is its distance to it; emptied once read)."""
    inputs, targets = batch
    import torch

    from compiler.frontend.trace import precision_context
    from runtime.session import TrainingSession, rng_seed_value
    from tools.fabric_random import FabricRandomMode, RandomMismatch
    from tools.reference import (
        as_numpy,
        as_tuple,
        load_weights,
        optimizer_step,
        pef_precision,
        reference_attention,
    )

    program = run.program
    roles = {s.name: s.role for s in program.meta.symbols}
    session = TrainingSession(program, state, step=step)
    session.seed = seed
    result = session.step(feed, hyper)
    after = session.state()

    model = run.torch_model()
    load_weights(model, state)
    model.train()
    mode = FabricRandomMode(joint.draws(rng_seed_value(seed, step)))
    try:
        with reference_attention(), mode:
            with precision_context(pef_precision(program)):
                raw = model(*inputs)
                loss = run.model_file.function("loss")(raw, *targets)
            loss.backward()
        mode.check_done()
    except RandomMismatch as error:
        raise ToolError(f"torch's dropout cannot be matched to the fabric's: {error}") from error

    expected: dict[str, np.ndarray] = {"loss": as_numpy(loss)}
    got: dict[str, np.ndarray] = {"loss": np.asarray(result.loss, dtype=np.float32)}
    for i, out in enumerate(as_tuple(raw)):
        expected[f"output.{i}"] = as_numpy(out)
        got[f"output.{i}"] = result.outputs[f"output.{i}"]
    for name, param in model.named_parameters():
        if param.grad is not None and f"{name}.grad" in result.gradients:
            expected[f"{name}.grad"] = as_numpy(param.grad)
            got[f"{name}.grad"] = result.gradients[f"{name}.grad"]
    for name, buffer in model.named_buffers():
        if roles.get(name) == "buffer" and name in after:
            expected[name] = as_numpy(buffer)
            got[name] = after[name]
    errors = {k: float_error(v, wide.get(k)) for k, v in expected.items()}
    wide.clear()  # the caller's last use: the optimizer's references below need the memory
    bf16 = pef_precision(program) != "fp32"  # loss, outputs and gradients through bf16
    rows = _judge(END_TO_END, got, expected, roles, state, overrides, scales, errors, bf16=bf16)
    judged = set(expected)
    del model, raw, loss, expected, got

    with torch.no_grad():
        stepped = optimizer_step(run, state, step, result.gradients, hyper)
        exact = optimizer_step(run, state, step, result.gradients, hyper, wide=True)
    stepped = {k: v for k, v in stepped.items() if k in after and k not in judged}
    errors = {k: float_error(v, exact.get(k)) for k, v in stepped.items()}
    rows += [
        _rename(r, " (after step)")
        for r in _judge(END_TO_END, after, stepped, roles, state, overrides, None, errors)
    ]
    return rows


def _rename(row: Comparison, suffix: str) -> Comparison:
    row.name += suffix
    return row


def verdict(rows: list[Comparison]) -> dict[str, dict[str, Any]]:
    """Per section (in order of appearance): tensors judged, those past the limit, the worst,
    how many pass only by torch's own float32 error."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        v = out.setdefault(
            r.section,
            {"tensors": 0, "failed": [], "worst": None, "ratio": 0.0, "by_torch_error": 0},
        )
        v["tensors"] += 1
        v["by_torch_error"] += r.by_torch_error
        if not r.ok:
            v["failed"].append(r.name)
        if v["worst"] is None or r.ratio > v["ratio"]:
            v["worst"], v["ratio"] = r.name, r.ratio
    return out


def _verdict_line(sections: dict[str, dict[str, Any]], rows: list[Comparison]) -> str:
    parts = []
    for name, v in sections.items():
        leaning = v["by_torch_error"]
        lean = f", {leaning} within torch's own float32 error only" if leaning else ""
        if v["failed"]:
            parts.append(
                f"{name} FAILS ({len(v['failed'])} of {v['tensors']} past the limit, worst "
                f"{v['worst']} at {v['ratio']:.3g}x)"
            )
        else:
            parts.append(f"{name} ok ({v['tensors']} tensors, worst at {v['ratio']:.2g}x{lean})")
    failed = any(v["failed"] for v in sections.values())
    return f"rdu-test: {'FAIL' if failed else 'PASS'}: " + "; ".join(parts)


def _tolerance_text(overrides: dict[str, float | None], precision: str = "fp32") -> str:
    """The rule the rows were judged by, in one line; a bf16 PEF's adds what its values through
    bf16 and its bfloat16 tensors are held to (``tools.tolerance``)."""
    tol = tolerance_for("float32", overrides)
    text = (
        f"float32 rtol {tol.rtol:.3g}, atol {tol.atol:.3g} (of each tensor's scale), "
        f"+ {tol.torch_factor:.3g} x torch's own float32 error (max|torch - torch float64|)"
    )
    if precision == "fp32":
        return text
    wide = through_bf16(tol)
    bf16 = tolerance_for("bfloat16")
    return (
        f"{text}; --precision {precision}: a float32 value computed through bf16 rtol "
        f"{wide.rtol:.3g}, atol {wide.atol:.3g}; bfloat16 tensors rtol {bf16.rtol:.3g}, atol "
        f"{bf16.atol:.3g} + {bf16.torch_factor:.3g} x torch's own distance from its legitimately "
        f"rounded float64 run, at most max({bf16.mismatch:.3g}, {bf16.mismatch_factor:.3g} x "
        "torch's own fraction) of the elements a bf16 unit or more off"
    )


@click.command(cls=OneLineCommand, context_settings=MODEL_COMMAND_SETTINGS)
@click.argument("model_path", required=False, metavar="MODEL.py")
@click.option("--pef", "pef_path", help="The compiled program (from rdu-compile).")
@click.option(
    "--rtol",
    type=float,
    default=None,
    help="Relative part of the float32 tolerance [default: 1e-5] (see tools/tolerance.py).",
)
@click.option(
    "--atol",
    type=float,
    default=None,
    help="Absolute part of the float32 tolerance, a fraction of each tensor's scale "
    "[default: 2**-22].",
)
@click.option(
    "--torch-error",
    "torch_factor",
    type=float,
    default=None,
    help="How many times torch's own float32 error (max|torch - torch in float64|) the limit "
    "adds [default: 4; 0: none].",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document (for tools).")
@click.option(
    "--localize", is_flag=True, help="Name the first unit that diverges, even when all pass."
)
@click.option("--init-ckpt-path", default=None, help="Compare with these weights.")
@click.option(
    "--reset-optimizer",
    is_flag=True,
    help="Start the optimizer state at zero instead of taking it from --init-ckpt-path.",
)
@click.option(
    "--allow-source-change",
    is_flag=True,
    help="Test a PEF although MODEL.py changed since it was compiled (comments, data code); "
    "the model's parameters and buffers must still match the PEF's.",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**64 - 1),  # what numpy and torch.manual_seed both take
    default=0,
    show_default=True,
    help="Init and dropout seed.",
)
@click.option("--debug", is_flag=True, help="Full tracebacks.")
@click.option("--help", "show_help", is_flag=True, help="Show this message and the model's.")
@click.pass_context
def rdu_test(
    ctx: click.Context,
    model_path: str | None,
    pef_path: str | None,
    rtol: float | None,
    atol: float | None,
    torch_factor: float | None,
    as_json: bool,
    localize: bool,
    init_ckpt_path: str | None,
    reset_optimizer: bool,
    allow_source_change: bool,
    seed: int,
    debug: bool,
    show_help: bool,
) -> None:
    """Compare MODEL.py on the emulated fabric with torch on the CPU, section by section."""

    def body() -> int:
        from tools.rdu_run import Run

        if show_help:
            print_help(ctx, model_path, debug)
            return 0
        if model_path is None or pef_path is None:
            raise ToolError("usage: rdu-test MODEL.py --pef PEF (see --help)")
        for flag, value in (("--rtol", rtol), ("--atol", atol), ("--torch-error", torch_factor)):
            if value is not None and not value >= 0:
                raise ToolError(f"{flag} must be a number >= 0, got {value}")
        opts = {
            "pef_path": pef_path,
            "seed": seed,
            "init_ckpt_path": init_ckpt_path,
            "reset_optimizer": reset_optimizer,
            "allow_source_change": allow_source_change,
            "lr": None,
            "momentum": None,
            "weight_decay": None,
        }
        overrides = {"rtol": rtol, "atol": atol, "torch_factor": torch_factor}
        run = Run(model_path, ctx.args, debug=debug, **opts)
        rows = check_against_torch(run, overrides, seed)
        rows.sort(key=lambda r: -r.ratio)
        sections = verdict(sorted(rows, key=lambda r: SECTION_ORDER.get(r.section, 9)))
        failed = any(v["failed"] for v in sections.values())
        found = None
        if failed or localize:
            from tools.divergence import localize as first_divergence

            found = first_divergence(run, overrides, seed)
        if as_json:
            tol = tolerance_for("float32", overrides)
            doc = {
                "verdict": "fail" if failed else "pass",
                "tolerance": {"float32": {"rtol": tol.rtol, "atol": tol.atol}},
                "torch_error_factor": {"float32": tol.torch_factor},
                "sections": sections,
                "tensors": [
                    {
                        "section": r.section,
                        "name": r.name,
                        "max_abs": r.max_abs,
                        "max_rel": r.max_rel,
                        "limit": r.limit,
                        "torch_error": r.torch_term,
                        "mismatched": r.mismatched,
                        "mismatch_limit": r.mismatch_limit,
                        "ratio": r.ratio,
                        "ok": r.ok,
                        "by_torch_error": r.by_torch_error,
                    }
                    for r in rows
                ],
            }
            if failed or localize:
                doc["first_divergence"] = None if found is None else found.as_dict()
            click.echo(json.dumps(doc, indent=1, allow_nan=True))
            return 1 if failed else 0
        width = max(len(r.name) for r in rows)
        swidth = max(len(r.section) for r in rows)
        for r in rows:
            mark = "ok" if r.ok else "MISMATCH"
            if r.by_torch_error:
                mark = "ok (torch's own float32 error)"
            click.echo(
                f"{r.section:<{swidth}}  {r.name:<{width}}  max abs {r.max_abs:.3e}  "
                f"max rel {r.max_rel:.3e}  limit {r.limit:.3e} (torch's own {r.torch_term:.1e})  "
                + (
                    f"differ {r.mismatched:.1%} (limit {r.mismatch_limit:.1%})  "
                    if r.mismatched
                    else ""
                )
                + mark
            )
        from tools.reference import pef_precision

        precision = pef_precision(run.program)
        click.echo(f"tolerance: {_tolerance_text(overrides, precision)}")
        if failed or localize:
            click.echo(f"first divergence: {found or 'none (every unit within the tolerance)'}")
        click.echo(_verdict_line(sections, rows))
        return 1 if failed else 0

    guarded("rdu-test", debug, body)


def main() -> None:
    rdu_test()


if __name__ == "__main__":
    main()
