"""Tracing a model with torch: one FX graph plus its signature, named by DRAM symbol.

- Training: a wrapper module returns ``(loss, *outputs.detach())``;
  ``aot_export_joint_with_descriptors``, run as ``torch.export`` runs it (``_as_export_traces``),
  gives one joint forward+backward graph. The placeholder and output descriptors (never
  placeholder order) say which is a parameter, buffer, user input, target, tangent, gradient or
  buffer update; ``meta["partitioner_tag"]`` says forward/backward.
- Inference: ``torch.export.export(model.eval(), inputs).run_decompositions(table)``; the export
  graph signature names parameters, buffers, constants and user inputs and outputs.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from compiler.frontend.complex_pairs import as_pairs
from compiler.frontend.decompositions import decomposition_table, inference_table
from compiler.frontend.errors import FrontendError
from compiler.frontend.spec import ModelSpec
from runtime.machine.opcodes import ELEMENT_TYPES

_WRAPPED = "model"
"""Attribute under which the training wrapper holds the user's module."""


@dataclass
class GraphInput:
    """A placeholder bound to a DRAM symbol."""

    node: torch.fx.Node
    name: str
    role: str  # parameter | buffer | input | label


@dataclass
class GraphOutput:
    """A graph result bound to a DRAM symbol.

    A parameter whose loss does not depend on it (unused, or read only through ``detach``)
    has no gradient output at all, as it has no ``.grad`` in torch: the optimizer leaves it
    alone (no weight decay, no momentum)."""

    node: torch.fx.Node
    name: str
    role: str  # loss | output | gradient | buffer
    more: list[torch.fx.Node] = field(default_factory=list)
    """Further terms to add (the gradient of a tied tensor used under several names)."""


@dataclass
class Traced:
    """A traced graph and its signature."""

    graph: torch.fx.Graph
    inputs: list[GraphInput]
    outputs: list[GraphOutput]
    tangents: list[torch.fx.Node] = field(default_factory=list)
    constants: dict[str, torch.Tensor] = field(default_factory=dict)
    """get_attr / lifted constant tensors by placeholder or attribute name."""
    param_names: dict[int, str] = field(default_factory=dict)
    """id(parameter tensor) -> its symbol (the first state_dict name of a tied tensor)."""


PRECISIONS = ("fp32", "bf16-mixed", "bf16")
"""The precisions a model compiles in (``rdu-compile --precision``)."""


def precision_context(precision: str) -> contextlib.AbstractContextManager[Any]:
    """What a model's forward and loss run under in ``precision``: nothing for ``fp32``,
    ``torch.autocast(device_type="cpu", dtype=torch.bfloat16)`` for ``bf16-mixed`` (the
    backward follows the forward's dtypes, as autograd does); nothing for ``bf16`` either
    (inference: the model and its float inputs are bf16 themselves, ``rdu-compile`` makes
    them so)."""
    if precision in ("fp32", "bf16"):
        return contextlib.nullcontext()
    if precision == "bf16-mixed":
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    raise FrontendError(f"precision {precision!r} is not supported yet (supported: {PRECISIONS})")


class _TrainStep(torch.nn.Module):
    """``forward(*inputs, *targets) -> (loss, *outputs detached)``."""

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: Callable[..., Any],
        n_inputs: int,
        source: Path | str = "model.py",
        precision: str = "fp32",
    ) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn
        self.n_inputs = n_inputs
        self.source = source
        self.precision = precision

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        inputs, targets = args[: self.n_inputs], args[self.n_inputs :]
        with precision_context(self.precision):
            out = self.model(*inputs)
            loss = self.loss_fn(out, *targets)  # see loss_call_site()
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            what = (
                f"a tensor of shape {list(loss.shape)}"
                if isinstance(loss, torch.Tensor)
                else f"a {type(loss).__name__}"
            )
            raise FrontendError(
                f"{self.source}: loss() returned {what}, not a 0-d loss tensor (reduce it, "
                "e.g. with .mean())"
            )
        outs = out if isinstance(out, tuple | list) else (out,)
        return (loss, *(o.detach() for o in outs))


def loss_call_site() -> tuple[Path, int]:
    """File and line of the wrapper's loss call: traced nodes of the loss end their stack there
    (torch does not record the frames of the user's loss function itself)."""
    lines, start = inspect.getsourcelines(_TrainStep.forward)
    for i, text in enumerate(lines):
        if "self.loss_fn(" in text:
            return Path(__file__).resolve(), start + i
    raise AssertionError("the training wrapper does not call loss_fn")


_DATA_DEPENDENT = ("GuardOnDataDependentSymNode", "DataDependentOutputException")
"""torch's errors for a Python decision on a tensor's value (``if x.sum() > 0``, ``.item()``)."""


@contextlib.contextmanager
def _tracing(what: str, source: Path | None = None) -> Iterator[None]:
    """Math SDPA, oneDNN off (an LSTM then traces as its cells' matmuls and activations, not
    as ``mkldnn_rnn_layer`` with its workspace of bytes), warnings and torch's own log output
    off (unless ``TORCH_LOGS`` asks for it), and torch's tracing failures turned into one-line
    FrontendErrors that start with the model's ``file:line`` where it failed (the deepest
    frame in ``source``, the model file, else in the user's code outside torch) when there is
    one, and name the library line below it that failed, with its code (``failed at
    modeling_m2m_100.py:578 in M2M100Encoder.forward (`if dropout_probability <
    self.layerdrop:`)``: LayerDrop's Python ``if`` on a random number), when there is one. A
    gradient that fails is named by the forward line it is the gradient of (``failed in the
    gradient of``: autograd's frames are torch's; HuBERT's SpecAugment write, whose gradient
    selects by a boolean mask)."""
    from unittest import mock

    import torch.fx.traceback as fx_traceback

    differentiated: list[int] = []
    """The sequence numbers of the forward ops whose gradients are being traced (aot_autograd's
    hooks give them to each backward node): the last is the one that failed, when tracing a
    gradient fails."""
    set_grad_fn_seq_nr = fx_traceback.set_grad_fn_seq_nr

    def recording(seq_nr: int) -> None:
        differentiated.append(seq_nr)
        set_grad_fn_seq_nr(seq_nr)

    with contextlib.ExitStack() as quiet:
        quiet.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")  # before the oneDNN flags, whose setter warns
        quiet.enter_context(sdpa_kernel([SDPBackend.MATH]))
        quiet.enter_context(torch.backends.mkldnn.flags(enabled=False))
        quiet.enter_context(_quiet_torch_logs())
        quiet.enter_context(mock.patch.object(fx_traceback, "set_grad_fn_seq_nr", recording))
        try:
            yield
        except FrontendError:
            raise
        except Exception as error:  # torch raises many kinds; the user needs the first line
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            frames = _error_frames(error)
            gradient = any(f.name == "_engine_run_backward" for tb in frames for f in tb)
            if gradient:  # autograd's frames are torch's: the forward's line it differentiates
                seq_nr = differentiated[-1] if differentiated else None
                frames = [_stack_frames(_forward_stack(error, seq_nr))]
            where, site = _user_line(frames, source)
            prefix = f"{where}: " if where else ""
            if gradient:
                what += f" failed in the gradient of {site or 'this line'}"
            else:
                what += f" failed at {site}" if site else " failed"
            kind = type(error).__name__
            if kind in _DATA_DEPENDENT:
                raise FrontendError(
                    f"{prefix}{what}: the model decides on a tensor's value in Python "
                    "(an `if` on a tensor, `.item()`, `.tolist()`...), which a dataflow graph "
                    f"cannot do; compute both branches and use torch.where ({kind})"
                ) from error
            if kind == "DynamicOutputShapeException":
                raise FrontendError(
                    f"{prefix}{what}: {first} makes a tensor whose shape depends on its values "
                    "(a boolean mask's selection `x[mask]`, `nonzero`), which a dataflow graph "
                    "fixed at compile time does not have; select with torch.where instead"
                ) from error
            raise FrontendError(f"{prefix}{what}: {kind}: {first}") from error


@contextlib.contextmanager
def _quiet_torch_logs() -> Iterator[None]:
    """No log records while torch traces, and what it prints on stderr held back (on a failure
    torch logs and prints the partial graph, tens of lines, before it raises): written out if
    the trace succeeds, dropped if it fails (the one-line error says what failed). Unless the
    user set ``TORCH_LOGS``."""
    import io
    import logging
    import os
    import sys

    if os.environ.get("TORCH_LOGS"):
        yield
        return
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    held = io.StringIO()
    try:
        with contextlib.redirect_stderr(held):
            yield
    finally:
        logging.disable(previous)
    sys.stderr.write(held.getvalue())  # reached only when tracing succeeded


_STACK_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)\n *([^\n]*)')


def _error_frames(error: BaseException) -> list[list[traceback.FrameSummary]]:
    """The frames of ``error`` and of each error it came from, outermost first; then those
    their messages quote (an op that fails while an exported program is decomposed again
    names the model's frames only in its message: ``Original traceback: File ...``)."""
    frames: list[list[traceback.FrameSummary]] = []
    quoted: list[list[traceback.FrameSummary]] = []
    seen: set[int] = set()
    chain: BaseException | None = error
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        frames.append(traceback.extract_tb(chain.__traceback__))
        quoted.append(_stack_frames(str(chain)))
        chain = chain.__cause__ or chain.__context__
    return frames + quoted


def _forward_stack(error: BaseException, seq_nr: int | None) -> str:
    """The stack trace of the forward op numbered ``seq_nr`` in the graph being traced when
    ``error`` was raised (the tracer's, read from the failed frames), "" if not found."""
    from torch.fx.experimental.proxy_tensor import ProxyTorchDispatchMode

    tb = error.__traceback__
    while tb is not None and seq_nr is not None:
        mode = tb.tb_frame.f_locals.get("proxy_mode")
        if isinstance(mode, ProxyTorchDispatchMode):
            for node in mode.tracer.graph.nodes:
                if node.meta.get("seq_nr") == seq_nr and node.meta.get("stack_trace"):
                    return str(node.meta["stack_trace"])
        tb = tb.tb_next
    return ""


def _stack_frames(stack: str) -> list[traceback.FrameSummary]:
    """The frames of a recorded stack trace (``traceback.format_list``'s lines)."""
    return [
        traceback.FrameSummary(file, int(line), name, lookup_line=False, line=code)
        for file, line, name, code in _STACK_FRAME.findall(stack)
    ]


def _user_line(
    frames: list[list[traceback.FrameSummary]], source: Path | None
) -> tuple[str | None, str | None]:
    """``file:line`` of the deepest frame in ``source`` (of the first of the tracebacks
    ``frames`` that has one), else in a file outside torch and this compiler; None when there
    is none. And the library line below the model's line
    where it failed (the deepest frame outside torch and this compiler, under the model's:
    ``modeling_m2m_100.py:578 in M2M100Encoder.forward (`if ...:`)``), None when the model's
    own line is the deepest or there is no model line."""
    import sysconfig

    from compiler.frontend.locations import qualified_name

    root = Path(__file__).resolve().parents[2]
    library = tuple(  # torch, this compiler and its tools, Python's own modules
        str(p)
        for p in (
            Path(torch.__file__).resolve().parent,
            root / "compiler",
            root / "tools",
            Path(sysconfig.get_paths()["stdlib"]).resolve(),
        )
    )
    model = str(Path(source).resolve()) if source is not None else None
    own: str | None = None
    other: str | None = None
    below: traceback.FrameSummary | None = None  # the deepest other frame under the model's
    for tb in frames:
        for frame in tb:
            path = str(Path(frame.filename).resolve())
            if path == model:
                own = f"{frame.filename}:{frame.lineno}"
                below = None
            elif not (path.startswith(library) or "<" in path):
                other = f"{frame.filename}:{frame.lineno}"
                below = frame if own is not None else None
        if own is not None:
            break
    if own is None or below is None or below.lineno is None:
        return own or other, None
    path = Path(below.filename)
    site = f"{path.name}:{below.lineno} in {qualified_name(path, below.lineno, below.name)}"
    code = (below.line or "").strip()
    return own, f"{site} (`{code}`)" if code else site


@contextlib.contextmanager
def _as_export_traces() -> Iterator[None]:
    """Trace the joint graph straight from the module as ``torch.export`` does inside: with
    ``torch.compiler.is_compiling()`` true (libraries such as transformers then take their
    traceable paths, e.g. no data-dependent mask checks) and with stack traces recorded on the
    forward nodes (the frames of ``forward`` methods, what export records).

    Exporting first and tracing the exported module again gave the same graph for a third more
    tracing (GPT-2: 0.35 s of a 6 s compile). aot_autograd does not expose make_fx's
    ``record_stack_traces``, so its module's ``make_fx`` is wrapped for the trace (torch is
    pinned; ``test/frontend`` checks the locations this gives), and the tracer captures each
    node's stack with ``_LazyLines`` (the same stack traces, for a fifth of the trace's time).
    """
    import functools
    from unittest import mock

    import torch.fx.proxy
    from torch._export.utils import _compiling_state_context
    from torch._functorch._aot_autograd import graph_capture
    from torch.fx.experimental.proxy_tensor import make_fx

    recording = functools.partial(make_fx, record_stack_traces=True)
    with (
        mock.patch.object(graph_capture, "make_fx", recording),
        mock.patch.object(torch.fx.proxy, "CapturedTraceback", _LazyLines),
        _compiling_state_context(),
    ):
        yield


class _LazyLines:
    """What ``torch.fx.proxy`` asks of ``torch.utils._traceback.CapturedTraceback`` to record a
    node's stack trace (``extract().summary()``, then the frames from the first ``forward``
    kept and formatted), with each frame's source line read only if it is formatted.

    torch's summary symbolizes every frame of the stack and reads its line from the file
    (``linecache``): about 60 frames a node, of which the trace keeps a handful; for GPT-2
    small's 2,400 nodes, 1.2 s of a 5 s trace. Here a frame's ``FrameSummary`` is made without
    its line (``lookup_line=False``), which ``format`` then reads: the same text
    (``test/frontend/test_stack_traces.py`` compares the two on a model's trace)."""

    __slots__ = ("frame",)

    def __init__(self, frame: FrameType | None) -> None:
        self.frame = frame

    @staticmethod
    def extract(*, script: bool = False, cpp: bool = False, skip: int = 0) -> Any:
        """The stack of the caller (``skip`` frames up), as ``CapturedTraceback.extract``
        (which gives the stack with TorchScript or C++ frames)."""
        if script or cpp:
            from torch.utils._traceback import CapturedTraceback

            return CapturedTraceback.extract(script=script, cpp=cpp, skip=skip)
        return _LazyLines(sys._getframe(1 + skip))

    def summary(self) -> traceback.StackSummary:
        """The frames, outermost first, their lines not read yet."""
        frames: list[traceback.FrameSummary] = []
        frame = self.frame
        while frame is not None:
            code = frame.f_code
            summary = traceback.FrameSummary(
                code.co_filename, frame.f_lineno, code.co_name, lookup_line=False
            )
            frames.append(summary)
            frame = frame.f_back
        frames.reverse()
        return traceback.StackSummary.from_list(frames)


def _locate_backward(graph: torch.fx.Graph) -> None:
    """Stack traces for the backward nodes, as they had when the exported graph was traced again:

    - a backward node without one takes that of the first forward node of its autograd sequence
      number (``meta["seq_nr"]``, the forward op it differentiates; torch's own
      ``copy_fwd_metadata_to_bw_nodes`` pairs them the same way);
    - a gradient sum (``meta["is_gradient_acc"]``: a tensor with several uses gets their
      gradients added) has a header without frames: it takes the header and the trace of its
      operand computed last (the gradient of the use whose gradient completes the sum).
    """
    forward: dict[int, str] = {}
    position = {node: i for i, node in enumerate(graph.nodes)}
    for node in graph.nodes:
        seq, trace = node.meta.get("seq_nr"), node.meta.get("stack_trace")
        if seq is not None and trace and node.meta.get("partitioner_tag") != "is_backward":
            forward.setdefault(seq, trace)
    for node in graph.nodes:
        if node.meta.get("partitioner_tag") != "is_backward":
            continue
        trace = node.meta.get("stack_trace") or ""
        if node.meta.get("is_gradient_acc") and 'File "' not in trace:
            ins = [o for o in node.all_input_nodes if 'File "' in (o.meta.get("stack_trace") or "")]
            if ins:
                latest = max(ins, key=position.__getitem__)
                node.meta["stack_trace"] = f"{trace}\n{latest.meta['stack_trace']}".strip()
        elif not trace and node.meta.get("seq_nr") in forward:
            node.meta["stack_trace"] = forward[node.meta["seq_nr"]]


def _dropout_as_eager(graph: torch.fx.Graph) -> None:
    """Dropout of a tensor below float32 (bf16 under autocast) as eager torch computes it on the
    CPU, where the trace says otherwise.

    The trace decomposes ``F.dropout`` into ``native_dropout``, which scales the kept elements
    by ``1 / (1 - p)`` held in float32. Eager ``F.dropout`` on the CPU (ATen's
    ``_dropout_impl``) multiplies by a noise tensor of the input's dtype,
    ``empty_like(x).bernoulli_(1 - p).div_(1 - p)``: the scale rounded to bf16 (1.109375 for
    ``p = 0.1``, not 1.1111), which moves a quarter of the elements by a bf16 unit. So, for such
    a ``native_dropout(x, p)`` (same mask), its result ``getitem(., 0)`` becomes
    ``native_dropout_backward(x, mask, scale)``, the op that computes ``x * mask * scale`` with
    one rounding, at the rounded scale; its gradient's ``native_dropout_backward(g, mask, .)``
    takes the rounded scale too (eager's ``grad * noise``). A float32 dropout stays as traced
    (the two scales agree to a float32 unit)::

        %r = native_dropout(%x, 0.1, True)      %r = native_dropout(%x, 0.1, True)
        %y = getitem(%r, 0)                  -> %m = getitem(%r, 1)
        %m = getitem(%r, 1)                     %y = native_dropout_backward(%x, %m, 1.109375)
        %gx = native_dropout_backward(%g, %m, 1.1111111111111112)   ... (%g, %m, 1.109375)
    """
    import operator

    aten = torch.ops.aten
    for node in list(graph.nodes):
        if node.target != aten.native_dropout.default:
            continue
        x, p = node.args[0], float(node.args[1])
        dtype = x.meta["val"].dtype
        if not dtype.is_floating_point or dtype.itemsize >= 4 or not 0 < p < 1:
            continue
        if len(node.args) > 2 and node.args[2] is False:
            continue
        scale = torch.ones((), dtype=dtype).div_(1 - p).item()  # eager's noise, rounded
        parts = {u.args[1]: u for u in node.users if u.target is operator.getitem}
        if 0 not in parts:
            continue
        mask = parts.get(1)
        if mask is None:
            with graph.inserting_after(node):
                mask = graph.call_function(operator.getitem, (node, 1))
            mask.meta = {**parts[0].meta, "val": node.meta["val"][1]}
        order = {n: i for i, n in enumerate(graph.nodes)}
        with graph.inserting_after(max(parts[0], mask, key=order.__getitem__)):
            scaled = graph.call_function(aten.native_dropout_backward.default, (x, mask, scale))
        scaled.meta = dict(parts[0].meta)
        parts[0].replace_all_uses_with(scaled)
        graph.erase_node(parts[0])
        for user in list(mask.users):
            if user.target == aten.native_dropout_backward.default and user is not scaled:
                user.args = (user.args[0], mask, scale)


@contextlib.contextmanager
def _mode(module: torch.nn.Module, training: bool) -> Iterator[None]:
    """``module`` in train or eval mode for the trace, its own mode restored afterwards."""
    modes = {m: m.training for m in module.modules()}
    module.train(training)
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode


def _check_tensors(kind: str, values: tuple[Any, ...]) -> None:
    for i, v in enumerate(values):
        if not isinstance(v, torch.Tensor):
            raise FrontendError(f"{kind} {i} is a {type(v).__name__}, not a tensor")


def param_symbols(module: torch.nn.Module) -> dict[int, str]:
    """id(tensor) -> symbol for parameters and buffers (tied tensors: the first name)."""
    names: dict[int, str] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), name)
    for name, b in module.named_buffers(remove_duplicate=False):
        names.setdefault(id(b), name)
    return names


def canonical_names(module: torch.nn.Module) -> dict[str, str]:
    """Every parameter/buffer name -> the symbol of its tensor (tied tensors share one)."""
    symbols = param_symbols(module)
    names: dict[str, str] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        names[name] = symbols[id(p)]
    for name, b in module.named_buffers(remove_duplicate=False):
        names[name] = symbols[id(b)]
    return names


def non_persistent_buffers(module: torch.nn.Module, traced: Traced) -> dict[str, str]:
    """The buffer symbols of ``traced`` that ``module`` keeps out of its ``state_dict``
    (registered with ``persistent=False``) -> the digest of their values now (empty for one the
    graph updates: its value is then training state, not a constant of the model).

    Checkpoints lack them, so the runtime takes their values from the model; the digest lets it
    refuse a model whose values differ from those the PEF was compiled for.
    """

    from runtime.pef.digest import value_sha256

    canonical = canonical_names(module)
    persistent = {canonical.get(name, name) for name in module.state_dict()}
    values = dict(module.named_buffers(remove_duplicate=False))
    updated = {o.name for o in traced.outputs if o.role == "buffer"}
    out: dict[str, str] = {}
    for gi in traced.inputs:
        if gi.role != "buffer" or gi.name in persistent or gi.name not in values:
            continue
        digest = ""
        if gi.name not in updated:
            # not np.ascontiguousarray: it makes a 0-d array (Gemma's embed_scale) 1-d
            tensor = values[gi.name].detach().cpu().contiguous()
            if tensor.dtype == torch.bfloat16:  # numpy has none: its bits (RecurrentGemma's
                dtype, array = "bf16", tensor.view(torch.int16).numpy()  # normalizer), hashed
            else:  # as the runtime hashes its ml_dtypes array
                array = tensor.numpy()
                dtype = next(n for n, e in ELEMENT_TYPES.items() if e.numpy == array.dtype.name)
            digest = value_sha256(dtype, array)
        out[gi.name] = digest
    return dict(sorted(out.items()))


"""numpy dtype codes (without byte order) -> PEF dtypes (the frontend accepts only these)."""


def _strip(name: str) -> str:
    prefix = _WRAPPED + "."
    return name[len(prefix) :] if name.startswith(prefix) else name


def trace_training(spec: ModelSpec) -> Traced:
    """The joint forward+backward graph of ``loss_fn(module(*inputs), *targets)``."""
    from torch._functorch._aot_autograd import descriptors as d
    from torch._functorch.aot_autograd import aot_export_joint_with_descriptors

    if spec.loss_fn is None:
        raise FrontendError("training needs a loss function (model.py defines no loss())")
    if spec.precision == "bf16":
        raise FrontendError(
            "precision 'bf16' is not supported yet for training (it is for inference PEFs; "
            "train with bf16-mixed: fp32 master weights)"
        )
    _check_tensors("example input", spec.example_inputs)
    _check_tensors("example target", spec.example_targets)
    n_in = len(spec.example_inputs)
    step = _TrainStep(spec.module, spec.loss_fn, n_in, spec.source_file, spec.precision)
    args = tuple(spec.example_inputs) + tuple(spec.example_targets)
    with _tracing("tracing the training step", spec.source_file), _mode(spec.module, training=True):
        with contextlib.ExitStack() as stack:
            stack.enter_context(_as_export_traces())
            joint = aot_export_joint_with_descriptors(
                stack, step, args, decompositions=decomposition_table()
            )
            gm = joint.graph_module
    graph = gm.graph
    _locate_backward(graph)
    _dropout_as_eager(graph)
    as_pairs(graph)
    canonical = canonical_names(spec.module)

    def symbol(target: str) -> str:
        name = _strip(target)
        return canonical.get(name, name)

    inputs: list[GraphInput] = []
    tangents: list[torch.fx.Node] = []
    constants: dict[str, torch.Tensor] = {}
    for node in graph.nodes:
        if node.op == "get_attr":
            constants[node.name] = _get_attr(gm, str(node.target))
            continue
        if node.op != "placeholder":
            continue
        desc = node.meta.get("desc")
        if isinstance(desc, d.ParamAOTInput):
            inputs.append(GraphInput(node, symbol(desc.target), "parameter"))
        elif isinstance(desc, d.BufferAOTInput):
            inputs.append(GraphInput(node, symbol(desc.target), "buffer"))
        elif isinstance(desc, d.PlainAOTInput):
            if desc.idx < n_in:
                inputs.append(GraphInput(node, f"input.{desc.idx}", "input"))
            else:
                inputs.append(GraphInput(node, f"target.{desc.idx - n_in}", "label"))
        elif isinstance(desc, d.TangentAOTInput):
            tangents.append(node)
        else:
            raise FrontendError(f"unsupported graph input {desc} in the training trace")
    (output,) = [n for n in graph.nodes if n.op == "output"]
    values = output.args[0]
    descs = output.meta.get("desc")
    if descs is None or len(descs) != len(values):
        raise FrontendError("the training trace has no output descriptors")
    outputs: list[GraphOutput] = []
    for value, desc in zip(values, descs, strict=True):
        if isinstance(desc, d.PlainAOTOutput):
            name, role = ("loss", "loss") if desc.idx == 0 else (f"output.{desc.idx - 1}", "output")
            outputs.append(GraphOutput(value, name, role))
        elif isinstance(desc, d.GradAOTOutput):
            of = desc.grad_of
            if isinstance(of, d.ParamAOTInput) and value is not None:  # None: no gradient
                pname = symbol(of.target)
                same = [o for o in outputs if o.name == f"{pname}.grad"]
                if same:  # a tied tensor: add up the gradients
                    same[0].more.append(value)
                else:
                    outputs.append(GraphOutput(value, f"{pname}.grad", "gradient"))
            # gradients of user inputs are not wanted (and None)
        elif isinstance(desc, d.InputMutationAOTOutput):
            mutated = desc.mutated_input
            if isinstance(mutated, d.BufferAOTInput):
                outputs.append(GraphOutput(value, symbol(mutated.target), "buffer"))
            else:
                raise FrontendError(f"the model mutates a graph input in place ({mutated})")
        elif desc is None and value is None:
            continue
        else:
            raise FrontendError(f"unsupported graph output {desc} in the training trace")
    return Traced(graph, inputs, outputs, tangents, constants, param_symbols(spec.module))


def _get_attr(gm: torch.nn.Module, target: str) -> torch.Tensor:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, torch.Tensor):
        raise FrontendError(f"graph attribute {target} is not a tensor")
    return obj


_GENERATED_FRAME = re.compile(r'File "<eval_with_key>[^"]*", line \d+.*\n\s*(\w+) = ')
"""A frame of an FX graph module's generated code, and the node its line assigns."""


def _subgraph_traces(ep: torch.export.ExportedProgram) -> dict[tuple[str, str], str]:
    """``(higher-order op node, inner node) -> stack trace`` for the ops inside the subgraphs
    of higher-order ops (``wrap_with_set_grad_enabled``: a ``torch.no_grad()`` block, such as
    Llama's rotary embedding), which export records with the model's frames."""
    traces: dict[tuple[str, str], str] = {}
    for node in ep.graph.nodes:
        if node.op != "call_function":
            continue
        for arg in node.args:
            if not (isinstance(arg, torch.fx.Node) and arg.op == "get_attr"):
                continue
            sub = getattr(ep.graph_module, str(arg.target), None)
            if not isinstance(sub, torch.fx.GraphModule):
                continue
            for inner in sub.graph.nodes:
                if inner.meta.get("stack_trace"):
                    traces[(node.name, inner.name)] = inner.meta["stack_trace"]
    return traces


def _restore_subgraph_traces(graph: torch.fx.Graph, traces: dict[tuple[str, str], str]) -> None:
    """Give the ops that ``run_decompositions`` inlined from a higher-order op's subgraph the
    stack traces they had in it.

    Decomposing runs a subgraph as its generated code, so its ops were recorded at
    ``<eval_with_key>.N:LINE`` instead of the model's lines; the line of generated code names
    the inner node, and ``meta["from_node"]`` the higher-order op it was inlined from.
    """
    if not traces:
        return
    outer = {name for name, _ in traces}
    for node in graph.nodes:
        match = _GENERATED_FRAME.search(node.meta.get("stack_trace") or "")
        if match is None:
            continue
        for source in _provenance(node.meta.get("from_node") or []):
            trace = traces.get((source, match.group(1))) if source in outer else None
            if trace is not None:
                node.meta["stack_trace"] = trace
                break


def _provenance(sources: list[Any]) -> Iterator[str]:
    """The names of the nodes in a ``from_node`` provenance chain, nearest first."""
    for source in sources:
        yield source.name
        yield from _provenance(source.from_node)


def trace_inference(spec: ModelSpec) -> Traced:
    """The forward graph of ``module.eval()`` on the example inputs, under ``spec.precision``
    (``bf16-mixed``: exported under autocast, so the graph holds autocast's casts as the
    training step's forward does)."""
    from torch.export.graph_signature import InputKind, OutputKind

    _check_tensors("example input", spec.example_inputs)
    with (
        _tracing("exporting the model", spec.source_file),
        _mode(spec.module, training=False),
        precision_context(spec.precision),
    ):
        exported = torch.export.export(spec.module, tuple(spec.example_inputs))
        inner = _subgraph_traces(exported)
        ep = exported.run_decompositions(inference_table())
    graph = ep.graph
    _restore_subgraph_traces(graph, inner)
    as_pairs(graph)
    canonical = canonical_names(spec.module)
    placeholders = {n.name: n for n in graph.nodes if n.op == "placeholder"}
    inputs: list[GraphInput] = []
    constants: dict[str, torch.Tensor] = {}
    n_user = 0
    for spec_in in ep.graph_signature.input_specs:
        node = placeholders[spec_in.arg.name]
        if spec_in.kind == InputKind.PARAMETER:
            name = str(spec_in.target)
            inputs.append(GraphInput(node, canonical.get(name, name), "parameter"))
        elif spec_in.kind == InputKind.BUFFER:
            name = str(spec_in.target)
            inputs.append(GraphInput(node, canonical.get(name, name), "buffer"))
        elif spec_in.kind == InputKind.USER_INPUT:
            inputs.append(GraphInput(node, f"input.{n_user}", "input"))
            n_user += 1
        elif spec_in.kind == InputKind.CONSTANT_TENSOR:
            constant = ep.constants[str(spec_in.target)]
            if not isinstance(constant, torch.Tensor):
                raise FrontendError(f"graph constant {spec_in.target} is not a tensor")
            constants[node.name] = constant
        else:
            raise FrontendError(f"unsupported graph input kind {spec_in.kind.name}")
    (output,) = [n for n in graph.nodes if n.op == "output"]
    values = output.args[0]
    outputs: list[GraphOutput] = []
    n_out = 0
    for value, spec_out in zip(values, ep.graph_signature.output_specs, strict=True):
        if spec_out.kind == OutputKind.USER_OUTPUT:
            outputs.append(GraphOutput(value, f"output.{n_out}", "output"))
            n_out += 1
        elif spec_out.kind == OutputKind.BUFFER_MUTATION:
            name = str(spec_out.target)
            outputs.append(GraphOutput(value, canonical.get(name, name), "buffer"))
        elif spec_out.kind == OutputKind.PARAMETER_MUTATION:
            raise _parameter_written(spec, value, str(spec_out.target))
        else:
            raise FrontendError(f"unsupported graph output kind {spec_out.kind.name}")
    return Traced(graph, inputs, outputs, [], constants, param_symbols(spec.module))


def _parameter_written(spec: ModelSpec, value: Any, name: str) -> FrontendError:
    """A forward that writes a parameter in place in eval mode (RWKV rescales its weights the
    first time it runs in eval mode), named at the model's line and the library's."""
    from compiler.frontend.locations import Locator

    locator = Locator(spec.source_file, spec.module)
    where = locator.of_node(value) if isinstance(value, torch.fx.Node) else spec.source_file
    site = locator.call_site_of(value) if isinstance(value, torch.fx.Node) else None
    at = f" at {site}" if site is not None else ""
    return FrontendError(
        f"{where}: in eval mode the model writes its parameter '{name}' in place{at}; a forward "
        "that changes its own weights is not supported yet"
    )
