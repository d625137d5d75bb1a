"""rdu-test: run one batch on the CPU with torch and on the emulated fabric; compare.

    rdu-test examples/mlp/model.py --pef out/mlp/mlp.pef [--rtol 1e-5]

For a training PEF it compares the loss, every model output, every parameter gradient, and the
parameters after one optimizer step; for an inference PEF, the outputs. The error of a tensor is
normwise: ``max|fabric - torch| / max|torch|`` (the absolute error when torch's tensor is 0).
Exit status 1 when any tensor is past ``--rtol``.
"""

from __future__ import annotations

from dataclasses import dataclass

import click
import numpy as np

from tools.cli import MODEL_COMMAND_SETTINGS, ToolError, guarded, print_help


@dataclass
class Comparison:
    name: str
    max_abs: float
    max_rel: float
    ok: bool


def compare(name: str, fabric: np.ndarray, reference: np.ndarray, rtol: float) -> Comparison:
    fabric = np.asarray(fabric)
    reference = np.asarray(reference)
    if fabric.shape != reference.shape:
        raise ToolError(f"{name}: fabric shape {fabric.shape} != torch shape {reference.shape}")
    diff = np.abs(fabric.astype(np.float64) - reference.astype(np.float64))
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(reference).max()) if reference.size else 0.0
    max_rel = max_abs / scale if scale > 0 else max_abs
    return Comparison(name, max_abs, max_rel, bool(np.isfinite(max_rel) and max_rel <= rtol))


def check_against_torch(run, rtol: float) -> list[Comparison]:
    """Compare one batch of ``run`` (an rdu_run.Run) on the fabric with torch on the CPU."""
    import torch

    from runtime.session import InferenceSession, TrainingSession

    state, _ = run.initial_state()
    model = run.torch_model()
    if run.opts["init_ckpt_path"]:
        from runtime.checkpoint import load_checkpoint

        model.load_state_dict(
            {
                k: torch.from_numpy(v)
                for k, v in load_checkpoint(run.opts["init_ckpt_path"]).model.items()
            }
        )
    split = "test" if run.is_inference else "train"
    inputs, targets = next(iter(run.batches(split, 0)))
    feed = run.batch(inputs, targets)
    rows: list[Comparison] = []
    if run.is_inference:
        model.eval()
        with torch.no_grad():
            outputs = _as_tuple(model(*inputs))
        fabric = InferenceSession(run.program, state).run(feed)
        for i, out in enumerate(outputs):
            rows.append(compare(f"output.{i}", fabric[f"output.{i}"], out.numpy(), rtol))
        return rows

    model.train()
    if run.model_file.has("optimizer"):
        optimizer = run.model_file.call("optimizer", model.parameters(), run.args)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    hyper = run.hyperparameters()
    for group in optimizer.param_groups:
        for key in ("lr", "momentum", "weight_decay"):
            if key in group and key in hyper:
                group[key] = hyper[key]
    raw = model(*inputs)
    outputs = _as_tuple(raw)
    loss = run.model_file.function("loss")(raw, *targets)
    optimizer.zero_grad()
    loss.backward()
    session = TrainingSession(run.program, state)
    result = session.step(feed, hyper)
    rows.append(compare("loss", np.asarray(result.loss), loss.detach().numpy(), rtol))
    for i, out in enumerate(outputs):
        rows.append(
            compare(f"output.{i}", result.outputs[f"output.{i}"], out.detach().numpy(), rtol)
        )
    gradients = result.gradients
    for name, param in model.named_parameters():
        if param.grad is not None and f"{name}.grad" in gradients:
            rows.append(
                compare(f"{name}.grad", gradients[f"{name}.grad"], param.grad.numpy(), rtol)
            )
    optimizer.step()
    after = session.state()
    for name, param in model.named_parameters():
        if name in after:
            rows.append(compare(f"{name} (after step)", after[name], param.detach().numpy(), rtol))
    return rows


def _as_tuple(outputs) -> tuple:
    return outputs if isinstance(outputs, tuple) else (outputs,)


@click.command(context_settings=MODEL_COMMAND_SETTINGS)
@click.argument("model_path", required=False, metavar="MODEL.py")
@click.option("--pef", "pef_path", help="The compiled program (from rdu-compile).")
@click.option("--rtol", type=float, default=1e-5, show_default=True, help="Relative tolerance.")
@click.option("--init-ckpt-path", default=None, help="Compare with these weights.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--localize", is_flag=True, help="Name the first unit that diverges even when all pass."
)
@click.option("--debug", is_flag=True, help="Full tracebacks.")
@click.option("--help", "show_help", is_flag=True, help="Show this message and the model's.")
@click.pass_context
def rdu_test(
    ctx: click.Context,
    model_path: str | None,
    pef_path: str | None,
    rtol: float,
    init_ckpt_path: str | None,
    seed: int,
    localize: bool,
    debug: bool,
    show_help: bool,
) -> None:
    """Compare MODEL.py on the emulated fabric with torch on the CPU."""

    def body() -> int:
        from tools.rdu_run import Run

        if show_help:
            print_help(ctx, model_path, debug)
            return 0
        if model_path is None or pef_path is None:
            raise ToolError("usage: rdu-test MODEL.py --pef PEF (see --help)")
        opts = {
            "pef_path": pef_path,
            "seed": seed,
            "init_ckpt_path": init_ckpt_path,
            "lr": None,
            "momentum": None,
            "weight_decay": None,
        }
        run = Run(model_path, ctx.args, debug=debug, **opts)
        rows = check_against_torch(run, rtol)
        width = max(len(r.name) for r in rows)
        for r in rows:
            mark = "ok" if r.ok else "MISMATCH"
            click.echo(
                f"{r.name:<{width}}  max abs {r.max_abs:.3e}  max rel {r.max_rel:.3e}  {mark}"
            )
        bad = [r.name for r in rows if not r.ok]
        if bad or localize:
            from tools.divergence import localize as first_divergence
            from tools.divergence import within

            found = first_divergence(run, within(rtol))
            click.echo(f"first divergence: {found or f'none (every unit within rtol {rtol})'}")
        if bad:
            click.echo(
                f"rdu-test: {len(bad)} of {len(rows)} tensors past rtol {rtol}: {', '.join(bad)}"
            )
            return 1
        click.echo(f"rdu-test: all {len(rows)} tensors within rtol {rtol}")
        return 0

    guarded("rdu-test", debug, body)


def main() -> None:
    rdu_test()


if __name__ == "__main__":
    main()
