"""rdu-compile: model.py -> out/<name>/<name>.pef (plus a compile log and each stage's IR).

rdu-compile examples/mlp/model.py [--inference] [-b 16] [--arch plasticine] [model args]
rdu-compile examples/mlp/model.py --check [--inference]   # every op the frontend refuses
"""

from __future__ import annotations

import errno
import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from tools.cli import (
    MODEL_COMMAND_SETTINGS,
    OneLineCommand,
    ToolError,
    guarded,
    host_memory_bytes,
    model_namespace,
    print_help,
    size_text,
)

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    import numpy as np
    import torch

    from compiler.frontend import ModelSpec, OpCheck
    from compiler.targets import Target
    from runtime.pef.schema import Program, Weights
    from tools.model_file import ModelFile


@click.command(cls=OneLineCommand, context_settings=MODEL_COMMAND_SETTINGS)
@click.argument("model_path", required=False, metavar="MODEL.py")
@click.option("--inference", is_flag=True, help="Compile the forward section only.")
@click.option("-b", "--batch-size", type=int, default=16, show_default=True)
@click.option("--pef-name", help="Name of the PEF and its folder [default: the model's name].")
@click.option("--output-folder", default="out", show_default=True)
@click.option(
    "--arch",
    default="plasticine",
    show_default=True,
    help="Target fabric: a preset (plasticine, sn10, sn30, sn40l, tiny) or a target file "
    "FILE.toml.",
)
@click.option(
    "--seed",
    type=click.IntRange(-(2**63), 2**64 - 1),  # what torch.manual_seed takes
    default=0,
    show_default=True,
    help="Seed for the model's init.",
)
@click.option(
    "--o0",
    "opt_level",
    flag_value=0,
    help="No fusion, one op a section (each op's own units, its tensors through DRAM).",
)
@click.option(
    "--o1",
    "opt_level",
    flag_value=1,
    default=True,
    help="Fuse elementwise ops; cut sections only where the fabric is full (the default).",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16-mixed", "bf16"]),
    default="fp32",
    show_default=True,
    help="fp32; bf16-mixed: torch.autocast(device_type='cpu', dtype=torch.bfloat16) "
    "semantics (matmuls in bf16 accumulating in fp32, fp32 master weights, gradients and "
    "optimizer state; with --inference the forward under autocast, fp32 weights); bf16 (with "
    "--inference): the model in bf16, weights and activations.",
)
@click.option(
    "--weights",
    "weights_path",
    default=None,
    metavar="CKPT",
    help="With --inference: store these weights in the PEF, at its precision (bf16 with "
    "--precision bf16): a checkpoint rdu-run wrote or a torch state_dict .pt, or 'model' for "
    "the model's own (model() at --seed); rdu-run --inference then needs no --init-ckpt-path.",
)
@click.option(
    "--data-parallel",
    is_flag=True,
    help="Mark the gradients to average across ranks (rdu-run --data-parallel); "
    "-b is the batch of one rank.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Trace the model and list every op the frontend cannot convert (lowering nothing); "
    "exit 1 if there is one.",
)
@click.option("--debug", is_flag=True, help="Full tracebacks and verbose logs.")
@click.option("--help", "show_help", is_flag=True, help="Show this message and the model's.")
@click.pass_context
def rdu_compile(
    ctx: click.Context,
    model_path: str | None,
    inference: bool,
    batch_size: int,
    pef_name: str | None,
    output_folder: str,
    arch: str,
    seed: int,
    opt_level: int,
    precision: str,
    weights_path: str | None,
    data_parallel: bool,
    check: bool,
    debug: bool,
    show_help: bool,
) -> None:
    """Compile MODEL.py for an RDU fabric and write its PEF."""

    def body() -> int:
        if show_help:
            print_help(ctx, model_path, debug)
            return 0
        if model_path is None:
            raise ToolError("missing MODEL.py (see --help)")
        if batch_size < 1:
            raise ToolError(f"--batch-size must be positive, got {batch_size}")
        if data_parallel and inference:
            raise ToolError("--data-parallel is for training: an inference PEF has no gradients")
        if precision == "bf16" and not inference:
            raise ToolError(
                "--precision bf16 is for inference PEFs (add --inference); train with "
                "--precision bf16-mixed (fp32 master weights)"
            )
        if weights_path is not None and not inference:
            raise ToolError(
                "--weights is for inference PEFs (add --inference); training starts from a "
                "checkpoint: rdu-run --init-ckpt-path"
            )
        if check:
            return _check(model_path, ctx.args, inference, batch_size, seed, debug, arch, precision)
        with _fewer_collections():
            return _compile(
                model_path,
                ctx.args,
                inference,
                batch_size,
                pef_name,
                output_folder,
                arch,
                seed,
                debug,
                data_parallel=data_parallel,
                opt_level=opt_level,
                precision=precision,
                weights_path=weights_path,
            )

    guarded("rdu-compile", debug, body)


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """The garbage collector off while torch, xdsl and the model load (``_collect_again`` turns it
    back on before compiling), and collecting less often while compiling.

    Importing torch makes hundreds of thousands of long-lived objects; with the collector on,
    the collections over them took about 15% of an MLP compile's CPU time (cProfile and
    ``gc.callbacks``, bench/speed.py). Freezing them leaves the compile's own cycles collected.
    """
    was_enabled, thresholds = gc.isenabled(), gc.get_threshold()
    gc.disable()
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if was_enabled:
            gc.enable()


def _collect_again() -> None:
    """Freeze what is loaded (never collected again, still freed by reference counting), then
    collect the compile's garbage, a tenth as often as Python's default."""
    from compiler.driver import COMPILE_GC_THRESHOLDS

    gc.freeze()
    gc.set_threshold(*COMPILE_GC_THRESHOLDS)
    gc.enable()


def _compile(
    model_path: str,
    extra: list[str],
    inference: bool,
    batch_size: int,
    pef_name: str | None,
    output_folder: str,
    arch: str,
    seed: int,
    debug: bool,
    data_parallel: bool,
    opt_level: int,
    precision: str = "fp32",
    weights_path: str | None = None,
) -> int:
    from compiler.driver import compile_model
    from compiler.targets import get_target

    target = get_target(arch)
    _check_pef_name(pef_name)
    _check_output_folder(Path(output_folder))
    tensors = None
    if weights_path not in (None, MODEL_WEIGHTS):  # read first: refused before the compile
        from runtime.checkpoint import load_checkpoint

        tensors = load_checkpoint(weights_path)["model"]
    model_file, spec = model_spec(
        model_path,
        extra,
        inference,
        batch_size,
        seed,
        debug,
        target,
        precision,
        values=weights_path == MODEL_WEIGHTS,
    )
    if weights_path == MODEL_WEIGHTS:
        tensors = model_state(spec.module)
        weights_path = f"model() at --seed {seed}"
    name = pef_name or model_file.name
    _check_output_folder(Path(output_folder) / name)
    flags = compile_flags(arch, batch_size, inference, data_parallel, opt_level, extra, precision)
    log: list[str] = [f"rdu-compile {model_file.path} {' '.join(flags)}"]
    _collect_again()
    try:
        result = compile_model(
            spec,
            inference=inference,
            target=target,
            out_dir=Path(output_folder) / name,
            pef_name=name,
            flags=flags,
            source_hash=model_file.source_hash(),
            batch_size=batch_size,
            log=log,
            data_parallel=data_parallel,
            opt_level=opt_level,
            verify_each_stage=debug,
            weights=None
            if tensors is None or weights_path is None
            else _weights_maker(tensors, weights_path, spec.module),
        )
    except OSError as error:
        raise _write_error(error, Path(output_folder) / name) from error
    if debug:
        click.echo("\n".join(log))
    else:
        click.echo(result.summary)
    sections = ", ".join(f"{s} ({p} PCUs, {m} PMUs)" for s, (p, m) in result.units.items())
    click.echo(f"wrote {result.pef_path} ({result.pef_bytes} bytes): {sections}")
    click.echo(f"log: {result.log_path}")
    folder = result.report_path.parent if result.report_path else Path(output_folder) / name
    click.echo(f"report: {folder / 'report.html'} (and report.json, trace.json)")
    return 0


MODEL_WEIGHTS = "model"
"""``--weights model``: the weights ``model(args)`` has when built at ``--seed`` (a model that
loads pretrained weights itself, e.g. from a ``--pretrained DIR``); a file named ``model`` is
``--weights ./model``."""


def model_state(module: torch.nn.Module) -> dict[str, np.ndarray]:
    """``module.state_dict()`` as numpy arrays, bf16 and f16 widened to float32 (exactly)."""
    return {
        name: (t.detach().float() if t.is_floating_point() else t.detach()).numpy().copy()
        for name, t in module.state_dict().items()
    }


def _weights_maker(
    tensors: dict[str, np.ndarray], path: str, module: torch.nn.Module
) -> Callable[[Program], Weights]:
    """``--weights CKPT``: what makes the PEF's weights section from the compiled program
    (``runtime.weights.weights_section``: ``tensors`` conformed to its symbols; the module's
    other state names, such as a tied weight's second name, allowed in the checkpoint)."""
    from runtime.weights import weights_section

    names = set(module.state_dict()) | {n for n, _ in module.named_buffers()}
    return lambda program: weights_section(program, tensors, path, allowed=names)


def compile_flags(
    arch: str,
    batch_size: int,
    inference: bool,
    data_parallel: bool,
    opt_level: int,
    extra: list[str],
    precision: str = "fp32",
) -> list[str]:
    """The options a PEF records (``meta.compile_flags``), the model's own arguments last; the
    precision only when it is not fp32 (``Meta.precision`` reads it back)."""
    flags = [f"--arch={arch}", f"--batch-size={batch_size}"]
    flags += [f"--precision={precision}"] if precision != "fp32" else []
    flags += ["--inference"] if inference else []
    flags += ["--data-parallel"] if data_parallel else []
    flags += [f"--o{opt_level}"]
    return flags + list(extra)


_WRITE_ERRORS = frozenset(
    (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
     errno.EISDIR, errno.ENAMETOOLONG, errno.EFBIG, errno.EEXIST, errno.ENOENT)
)  # fmt: skip
"""The errors of writing the outputs that are the user's or the machine's (a full disk, a
read-only or missing folder), not the compiler's."""


def _write_error(error: OSError, out_dir: Path) -> Exception:
    """A failed write under ``out_dir``: a ToolError naming the file and the reason when the
    problem is the disk's or the folder's, else ``error`` itself (an internal error)."""
    if error.errno not in _WRITE_ERRORS:
        return error
    what = error.filename2 or error.filename or out_dir
    return ToolError(f"cannot write {what}: {error.strerror or error}")


_MAX_NAME_BYTES = 240
"""255 bytes a file name (Linux file systems), less our longest suffix (``.sections.mlir``)."""


def _check_pef_name(pef_name: str | None) -> None:
    """``--pef-name`` is a name (of the PEF and its folder), not a path."""
    if pef_name is None:
        return
    if pef_name in ("", ".", "..") or "/" in pef_name or "\\" in pef_name or "\0" in pef_name:
        raise ToolError(
            f"--pef-name {pef_name!r} is not a name: give a plain name (no '/'); the PEF goes "
            "to --output-folder/NAME/NAME.pef"
        )
    size = len(pef_name.encode(errors="surrogateescape"))
    if size > _MAX_NAME_BYTES:
        raise ToolError(
            f"--pef-name is {size} bytes long, more than the {_MAX_NAME_BYTES} a file name "
            "leaves for it (NAME.sections.mlir is written)"
        )


def _check_output_folder(folder: Path) -> None:
    """``folder`` is a folder, or can be made one: the nearest existing path on the way is a
    writable folder (checked before tracing, so that nothing is written before the error)."""
    import os

    if "\0" in str(folder):
        raise ToolError(f"--output-folder {str(folder)!r} holds a NUL character")
    try:
        existing = folder
        while not existing.exists() and existing != existing.parent:
            if existing.is_symlink():  # a dangling link
                raise ToolError(f"--output-folder: {existing} is a broken symbolic link")
            existing = existing.parent
        is_dir = existing.is_dir()
    except OSError as error:  # a name too long, a loop of links...
        raise ToolError(f"--output-folder: {folder}: {error.strerror or error}") from None
    if not is_dir:
        raise ToolError(f"--output-folder: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ToolError(f"--output-folder: cannot write in {existing} (permission denied)")


def _check_batch_size(
    model_file: ModelFile, args: argparse.Namespace, inference: bool, target: Target
) -> None:
    """Refuse an example batch too large (``-b 100000000``) before it is allocated: the model's
    example functions run first on torch's meta device, which gives shapes without memory; each
    tensor must fit the target's off-chip memory and all of them this machine's memory."""
    import torch

    from compiler.capacity import check_batch_fits

    functions = ["example_inputs"] + ([] if inference else ["example_targets"])
    try:
        with torch.device("meta"):
            batch = [
                (f"{function}()[{i}]", tensor)
                for function in functions
                for i, tensor in enumerate(model_file.tensors(function, args))
            ]
    except Exception:  # the dry run cannot tell (e.g. the function reads data from a file):
        return  # the real call then runs, and reports its own errors
    check_batch_fits(target, model_file.path, batch)
    total = sum(t.numel() * t.element_size() for _, t in batch)
    memory = host_memory_bytes()
    if memory is not None and total > memory:
        name, largest = max(batch, key=lambda item: item[1].numel() * item[1].element_size())
        raise ToolError(
            f"-b {args.batch_size}: the example batch would take {size_text(total)} ({name} is "
            f"{list(largest.shape)} {str(largest.dtype).removeprefix('torch.')}), more than "
            f"this machine's {size_text(memory)} of memory"
        )


def model_spec(
    model_path: str,
    extra: list[str],
    inference: bool,
    batch_size: int,
    seed: int,
    debug: bool,
    target: Target,
    precision: str = "fp32",
    *,
    values: bool = False,
) -> tuple[ModelFile, ModelSpec]:
    """The model file and what the compiler compiles of it: ``model(args)`` built under
    ``seed``, with its example batch (and, for training, its loss and optimizer), traced in
    ``precision``. ``values``: the module's weights are read (``--weights model``); without,
    they may be uninitialised (``build_model``)."""
    import dataclasses

    import torch

    from tools.model_file import ModelFileError, load_model_file

    model_file = load_model_file(model_path)
    args = model_namespace(
        model_file, extra, {"batch_size": batch_size, "seed": seed, "epoch": 0, "debug": debug}
    )
    _check_batch_size(model_file, args, inference, target)
    torch.manual_seed(seed)
    module = build_model(model_file, args, values=values)
    if not isinstance(module, torch.nn.Module):
        raise ModelFileError(
            f"{model_file.path}: model() must return a torch.nn.Module, got {type(module).__name__}"
        )
    spec = model_file.spec(module, args, inference=inference)
    if precision == "bf16":  # inference as deployed: bf16 weights, buffers and inputs
        module.to(torch.bfloat16)
        inputs = tuple(
            x.to(torch.bfloat16) if x.is_floating_point() else x for x in spec.example_inputs
        )
        spec = dataclasses.replace(spec, example_inputs=inputs)
    return model_file, dataclasses.replace(spec, precision=precision)


def build_model(model_file: ModelFile, args: argparse.Namespace, *, values: bool) -> Any:
    """``model(args)``; without ``values``, with its parameters and persistent buffers
    allocated but not initialised, when nothing the compiler writes depends on them.

    The compiler reads a model's shapes, dtypes and structure; the values it records are those
    of non-persistent buffers (their digests) and of tensors a module holds outside its
    parameters and buffers (traced as constants). So the model is built on the meta device
    (no init: transformers' init of GPT-2 small's 124M parameters took 1.5 s of CPU, a
    tenth of its compile's front half) and given empty CPU storage (``to_empty``: tied
    parameters stay tied), unless one of those is found, or ``model()`` fails on the meta
    device; then it is built again as it is, from the same torch random state."""
    import torch

    if not values:
        state = torch.random.get_rng_state()
        try:
            with torch.device("meta"):
                module = model_file.call("model", args)
        except Exception:  # e.g. an .item() in __init__: the real build below says what failed
            module = None
        if isinstance(module, torch.nn.Module) and not _holds_values(module):
            return _allocate(module)
        torch.random.set_rng_state(state)
    return model_file.call("model", args)


def _allocate(module: torch.nn.Module) -> torch.nn.Module:
    """``module``'s meta parameters and buffers replaced by uninitialised CPU tensors of the
    same shapes and dtypes; a tensor held under two names (tied weights) stays one tensor
    (``Module.to_empty`` makes two: the meta and the CPU tensor cannot share a ``.data``)."""
    import torch

    done: dict[int, Any] = {}

    def empty(tensor: torch.Tensor) -> Any:
        if id(tensor) not in done:
            new = torch.empty_like(tensor, device="cpu")
            if isinstance(tensor, torch.nn.Parameter):
                new = torch.nn.Parameter(new, requires_grad=tensor.requires_grad)
            done[id(tensor)] = new
        return done[id(tensor)]

    for sub in module.modules():
        for name, param in sub._parameters.items():
            if param is not None:
                sub._parameters[name] = empty(param)
        for name, buffer in sub._buffers.items():
            if buffer is not None:
                sub._buffers[name] = empty(buffer)
    return module


def _holds_values(module: torch.nn.Module) -> bool:
    """Whether ``module`` (or a submodule) has a non-persistent buffer, or holds a tensor that
    is neither a parameter nor a buffer (an attribute, or an item of a list, tuple or dict
    attribute)."""
    import torch

    for sub in module.modules():
        if sub._non_persistent_buffers_set:
            return True
        tensors = [*sub._parameters.values(), *sub._buffers.values()]
        if any(type(t) not in (torch.nn.Parameter, torch.Tensor) for t in tensors if t is not None):
            return True  # a lazy module's uninitialised parameter, a tensor subclass
        for name, value in vars(sub).items():
            if name in _MODULE_STATE:
                continue
            items = list(value.values()) if isinstance(value, dict) else value
            items = items if isinstance(items, list | tuple) else [items]
            if any(isinstance(item, torch.Tensor) for item in items):
                return True
    return False


_MODULE_STATE = frozenset(("_parameters", "_buffers", "_modules"))
"""``torch.nn.Module``'s own dicts of its parameters, buffers and submodules."""


def _check(
    model_path: str,
    extra: list[str],
    inference: bool,
    batch_size: int,
    seed: int,
    debug: bool,
    arch: str,
    precision: str = "fp32",
) -> int:
    """``--check``: trace the model, convert every op, list the ones refused (exit 1)."""
    from compiler.frontend import check_ops
    from compiler.targets import get_target

    target = get_target(arch)
    model_file, spec = model_spec(
        model_path, extra, inference, batch_size, seed, debug, target, precision
    )
    result = check_ops(spec, inference=inference)
    what = f"{model_file.path.name} ({'inference' if inference else 'training'})"
    click.echo("\n".join(format_check(result, what)))
    if result.issues:
        refused = len({i.op for i in result.issues})
        raise ToolError(
            f"{model_file.path}: {refused} of {len(result.ops)} ops not supported (listed above)"
        )
    return 0


def format_check(result: OpCheck, what: str) -> list[str]:
    """The ``--check`` listing: one line if every op converts; else a header, then each refused
    op (in graph order) with its count of calls and one line a distinct place::

        aten.cosh.default: 3 calls
          model.py:19 -> spectral.py:12 in spectral_mix  (x2)
          model.py:19 -> spectral.py:12 in spectral_mix (gradient)
    """
    calls = sum(result.ops.values())
    if not result.issues:
        return [f"{what}: all {len(result.ops)} ops supported ({calls} calls)"]
    by_op: dict[str, list[str]] = {}
    for issue in result.issues:
        line = f"  {issue.where}"
        if issue.call_site is not None:
            line += f" -> {issue.call_site}"
        if issue.detail:
            line += f": {issue.detail}"
        if issue.backward:
            line += " (gradient)"
        by_op.setdefault(issue.op, []).append(line)
    n_calls = sum(len(v) for v in by_op.values())
    out = [
        f"{what}: {len(by_op)} of {len(result.ops)} ops not supported ({n_calls} of {calls} calls):"
    ]
    for op, lines in by_op.items():
        out.append(f"{op}: {len(lines)} call{'s' if len(lines) > 1 else ''}")
        counts: dict[str, int] = {}
        for line in lines:
            counts[line] = counts.get(line, 0) + 1
        out += [line if n == 1 else f"{line}  (x{n})" for line, n in counts.items()]
    return out


def main() -> None:
    """The console command: ``rdu_compile``, then ``_exit_now``."""
    try:
        rdu_compile()
    except SystemExit as done:
        _exit_now(done.code)


def _exit_now(code: str | int | None) -> NoReturn:
    """End the process without tearing the interpreter down: the ``atexit`` functions run and
    the standard streams are flushed, as at a normal exit, then ``os._exit``.

    With torch, torch._dynamo and a compiled model loaded, freeing every module and object one
    by one took 0.55 s of each rdu-compile (about a tenth of a GPT compile; the ``atexit``
    functions take 0.01 s) and does nothing a finished command needs: every file it writes is
    closed (atomically replaced) before this."""
    import atexit
    import os

    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): the message on stderr, status 1
        print(code, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: what Python's own exit reports as 120
            status = status or 120
    os._exit(status)


if __name__ == "__main__":
    main()
