"""ATen converters for convolutional networks: convolution, pooling and padding, with backward.

Their table joins the others in ``compiler/frontend/registry.py``.
Everything is built from a few dataflow primitives, so the IR never grows with the
size of a tensor or a kernel:

- ``dataflow.pad``: zero padding at the edges, and between elements (the dilation of a strided
  convolution's gradient);
- ``dataflow.as_strided`` windows: ``x[n, c, o * stride + k * dilation]`` seen as dims
  ``[n, c, o, k]``, im2col as a view, no copy;
- a convolution is ``sum(window(x) * w)`` over ``(n, g, oc, o.., ic, k..)``, which the lowering
  fuses into one multiply-accumulate kernel (``contract``: the emulator runs it as a matmul);
- pooling reduces the window dims with ``max`` or ``sum``.

The gradient w.r.t. the input of a window (col2im: every window that covers an element adds its
gradient there) reads the window gradient, dilated by the stride and padded by the kernel's
reach, through a window with negative strides, then sums the kernel dims. Max pooling routes the
gradient to the index torch picks, the first maximum in window order: the forward computes the
indices as the smallest flat input index among the window's maxima.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from xdsl.dialects.builtin import f32, i1, i64
from xdsl.ir import SSAValue

from compiler.frontend.converter import Call, ConversionError, ConverterTable, Result
from compiler.frontend.emitter import Emitter, elt_of, shape_of

TABLE = ConverterTable()
"""This family's converters (the registry joins it with the others)."""
converts = TABLE.converts

_NO_INDEX = 2**62
"""Larger than any flat index: what a window position that is not a maximum offers to ``min``."""


def _row_major(shape: Sequence[int]) -> list[int]:
    strides = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        strides[i] = strides[i + 1] * shape[i + 1]
    return strides


def _ints(value: Any, n: int, default: Sequence[int] | None = None) -> tuple[int, ...]:
    """An ATen int-list argument for ``n`` spatial dims (one value stands for all)."""
    if value is None or (isinstance(value, list | tuple) and len(value) == 0):
        if default is None:
            raise ConversionError("a missing kernel geometry argument")
        return tuple(default)
    if isinstance(value, int):
        return (value,) * n
    values = tuple(int(v) for v in value)
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ConversionError(f"{len(values)} values for {n} spatial dims")
    return values


@dataclass(frozen=True)
class Window:
    """Sliding windows over the last ``len(kernel)`` dims of a tensor: window ``o``, position
    ``k`` reads input element ``o * stride + k * dilation - padding`` (padding reads zero, or
    -inf for max pooling)."""

    size: tuple[int, ...]
    """Input extents ``S`` of the spatial dims."""
    out: tuple[int, ...]
    """Window counts ``O`` (torch's output extents)."""
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: tuple[int, ...]

    @property
    def reach(self) -> tuple[int, ...]:
        """``(kernel - 1) * dilation``: how far a window reaches past its first element."""
        return tuple((k - 1) * d for k, d in zip(self.kernel, self.dilation, strict=True))

    @property
    def high(self) -> tuple[int, ...]:
        """Padding after the input that the last window reaches (ceil mode may reach past
        ``padding``; a window may also stop short of it)."""
        return tuple(
            max(0, (o - 1) * s + r + 1 - n - p)
            for o, s, r, n, p in zip(
                self.out, self.stride, self.reach, self.size, self.padding, strict=True
            )
        )

    @property
    def padded(self) -> tuple[int, ...]:
        """Extents of the padded input the windows read."""
        return tuple(n + p + h for n, p, h in zip(self.size, self.padding, self.high, strict=True))

    def spread(self) -> tuple[list[int], list[int], list[int]]:
        """``dataflow.pad``'s (low, high, interior) per spatial dim that turn a gradient over
        the windows ``[.., *O]`` into what the input gradient reads (see ``_col2im``): the
        windows ``s`` apart (``s - 1`` zeros between), the reach ``L`` in front, and room up to
        the last input element's read at ``S - 1 + p + L``."""
        low, high, interior = [], [], []
        for n, p, r, o, s in zip(
            self.size, self.padding, self.reach, self.out, self.stride, strict=True
        ):
            dilated = (o - 1) * s + 1
            low.append(r)
            high.append(max(n + p + r, r + dilated) - r - dilated)
            interior.append(s - 1)
        return low, high, interior


def _window(
    c: Call,
    size: Sequence[int],
    out: Sequence[int],
    *,
    dilation: bool = True,
) -> Window:
    """A pooling's windows, its kernel cut to the positions any window can read inside the
    padded input: position ``k`` reads padded element ``o * s + k * d`` (``o >= 0``), so one
    with ``k * d >= S + 2p`` reads past it for every window (ceil mode's overhang: no element,
    counted in no divisor, as torch has it). EfficientNet's pooler, ``AvgPool2d(hidden_dim,
    ceil_mode=True)``, at its defaults a kernel of 2560 over a 19x19 map, reads 361 elements
    a window, not 2560^2."""
    n = len(out)
    kernel = _ints(c.a["kernel_size"], n)
    stride = _ints(c.a.get("stride"), n, kernel)
    padding = _ints(c.a.get("padding", 0), n)
    dil = _ints(c.a.get("dilation", 1), n) if dilation else (1,) * n
    reads = tuple(
        min(k, (e + 2 * p - 1) // d + 1)
        for k, e, p, d in zip(kernel, size, padding, dil, strict=True)
    )
    return Window(tuple(size), tuple(out), reads, stride, dil, padding)


def _pad_for(em: Emitter, x: SSAValue, w: Window, value: float = 0.0) -> SSAValue:
    """``x`` padded (leading dims untouched) as the windows read it, with ``value``."""
    lead = len(shape_of(x)) - len(w.size)
    low = [0] * lead + list(w.padding)
    high = [0] * lead + list(w.high)
    padded = em.pad(x, low, high)
    if value == 0.0 or padded is x:
        return padded
    inside = em.pad(em.fill(True, shape_of(x), i1), low, high)
    return em.select(inside, padded, value)


def _windows(em: Emitter, xp: SSAValue, w: Window) -> SSAValue:
    """The view ``[*lead, *O, *K]`` of a padded ``[*lead, *P]`` tensor: ``xp[.., o*s + k*d]``."""
    shape = shape_of(xp)
    lead = len(shape) - len(w.size)
    rm = _row_major(shape)
    spatial = rm[lead:]
    strides = [
        *rm[:lead],
        *(s * st for s, st in zip(w.stride, spatial, strict=True)),
        *(d * st for d, st in zip(w.dilation, spatial, strict=True)),
    ]
    return em.as_strided(xp, [*shape[:lead], *w.out, *w.kernel], strides)


def _window_dims(rank: int, w: Window) -> list[int]:
    """The kernel dims of a ``[*lead, *O, *K]`` window view of rank ``rank``."""
    return list(range(rank - len(w.kernel), rank))


def _col2im(em: Emitter, grads: SSAValue, w: Window) -> SSAValue:
    """``[*lead, *S]``: each input element gets the sum of the gradients ``grads[*lead, *O, *K]``
    of the window positions that read it.

    Position ``(o, k)`` reads element ``h = o*s + k*d - p``, so ``h`` collects ``grads`` at
    ``o*s = h + p - k*d``. Dilating the ``O`` dims by the stride (zeros between) and padding them
    by the reach ``L`` in front, element ``h`` reads the dilated gradient at ``h + p + L - k*d``:
    a window with stride ``-d`` along ``k``, summed over ``k``.
    """
    shape = shape_of(grads)
    nsp = len(w.size)
    lead = len(shape) - 2 * nsp
    low, high, interior = w.spread()
    zeros, knone = [0] * lead, [0] * nsp
    padded = em.pad(
        grads,
        [*zeros, *low, *knone],
        [*zeros, *high, *knone],
        [*zeros, *interior, *knone],
    )
    rm = _row_major(shape_of(padded))
    spatial, kdims = rm[lead : lead + nsp], rm[lead + nsp :]
    strides = [
        *rm[:lead],
        *spatial,
        *(k - d * st for k, d, st in zip(kdims, w.dilation, spatial, strict=True)),
    ]
    offset = sum((p + r) * st for p, r, st in zip(w.padding, w.reach, spatial, strict=True))
    view = em.as_strided(padded, [*shape[:lead], *w.size, *w.kernel], strides, offset)
    return em.reduce("sum", view, _window_dims(len(shape), w), False)


# ------------------------------------------------------------------------------------------
# convolution
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Conv:
    """A convolution's shapes: ``x [N, C, *S]``, ``w [OC, C/G, *K]``, ``y [N, OC, *O]``."""

    n: int
    c: int
    oc: int
    groups: int
    win: Window

    @property
    def cg(self) -> int:
        return self.c // self.groups

    @property
    def ocg(self) -> int:
        return self.oc // self.groups


def _conv_geometry(c: Call, x: SSAValue, w: SSAValue, y_shape: Sequence[int]) -> _Conv:
    """The shapes of ``y = convolution(x, w)``, as the direct convolution they stand for: a
    transposed convolution is the input gradient of the direct convolution of ``y`` with ``w``
    (``w [C_in, C_out/G, *K]``: ``x`` is the direct one's output)."""
    xs, ws = shape_of(x), shape_of(w)
    if len(xs) < 3 or len(xs) != len(ws):
        raise ConversionError(f"convolution of a {list(xs)} input (needs [N, C, *spatial])")
    nsp = len(xs) - 2
    stride = _ints(c.a["stride"], nsp)
    padding = _ints(c.a["padding"], nsp)
    dilation = _ints(c.a["dilation"], nsp)
    groups = int(c.a["groups"])
    if c.a.get("transposed"):
        win = Window(tuple(y_shape[2:]), xs[2:], ws[2:], stride, dilation, padding)
        return _Conv(xs[0], y_shape[1], ws[0], groups, win)
    if any(int(p) for p in c.a.get("output_padding") or []):
        raise ConversionError("output_padding of a direct convolution")
    win = Window(xs[2:], tuple(y_shape[2:]), ws[2:], stride, dilation, padding)
    return _Conv(xs[0], xs[1], ws[0], groups, win)


def _conv_forward(em: Emitter, x: SSAValue, w: SSAValue, g: _Conv) -> SSAValue:
    """``y[n, gi*OCg + j, o] = sum_{ci, k} xp[n, gi*Cg + ci, o*s + k*d] * w[gi*OCg + j, ci, k]``
    over the space ``[N, G, OCg, *O, Cg, *K]``."""
    win = g.win
    nsp = len(win.size)
    xp = _pad_for(em, x, win)
    xs = _row_major(shape_of(xp))
    ws = _row_major(shape_of(w))
    chan, spatial = xs[1], xs[2:]
    space = [g.n, g.groups, g.ocg, *win.out, g.cg, *win.kernel]
    x_view = em.as_strided(
        xp,
        space,
        [
            xs[0],
            g.cg * chan,
            0,
            *(s * st for s, st in zip(win.stride, spatial, strict=True)),
            chan,
            *(d * st for d, st in zip(win.dilation, spatial, strict=True)),
        ],
    )
    w_view = em.as_strided(w, space, [0, g.ocg * ws[0], ws[0], *[0] * nsp, ws[1], *ws[2:]])
    y = em.reduce("sum", em.mul(x_view, w_view), list(range(3 + nsp, len(space))), False)
    return em.reshape(y, [g.n, g.oc, *win.out])


def _conv_input_grad(em: Emitter, gy: SSAValue, w: SSAValue, g: _Conv) -> SSAValue:
    """``gx[n, gi*Cg + ci, h] = sum_{j, k} gd[n, gi*OCg + j, h + p + L - k*d] * w[.., ci, k]``
    where ``gd`` is ``gy`` dilated by the stride and padded by the reach ``L`` (see
    ``_col2im``), over the space ``[N, G, Cg, *S, OCg, *K]``."""
    win = g.win
    nsp = len(win.size)
    low, high, interior = win.spread()
    gd = em.pad(gy, [0, 0, *low], [0, 0, *high], [0, 0, *interior])
    gs = _row_major(shape_of(gd))
    ws = _row_major(shape_of(w))
    chan, spatial = gs[1], gs[2:]
    space = [g.n, g.groups, g.cg, *win.size, g.ocg, *win.kernel]
    offset = sum((p + r) * st for p, r, st in zip(win.padding, win.reach, spatial, strict=True))
    g_view = em.as_strided(
        gd,
        space,
        [
            gs[0],
            g.ocg * chan,
            0,
            *spatial,
            chan,
            *(-d * st for d, st in zip(win.dilation, spatial, strict=True)),
        ],
        offset,
    )
    w_view = em.as_strided(w, space, [0, g.ocg * ws[0], ws[1], *[0] * nsp, ws[0], *ws[2:]])
    gx = em.reduce("sum", em.mul(g_view, w_view), list(range(3 + nsp, len(space))), False)
    return em.reshape(gx, [g.n, g.c, *win.size])


def _conv_weight_grad(em: Emitter, gy: SSAValue, x: SSAValue, g: _Conv) -> SSAValue:
    """``gw[gi*OCg + j, ci, k] = sum_{n, o} gy[n, gi*OCg + j, o] * xp[n, gi*Cg + ci, o*s + k*d]``
    over the space ``[G, OCg, Cg, *K, N, *O]``."""
    win = g.win
    nsp = len(win.size)
    xp = _pad_for(em, x, win)
    xs = _row_major(shape_of(xp))
    gs = _row_major(shape_of(gy))
    chan, spatial = xs[1], xs[2:]
    space = [g.groups, g.ocg, g.cg, *win.kernel, g.n, *win.out]
    x_view = em.as_strided(
        xp,
        space,
        [
            g.cg * chan,
            0,
            chan,
            *(d * st for d, st in zip(win.dilation, spatial, strict=True)),
            xs[0],
            *(s * st for s, st in zip(win.stride, spatial, strict=True)),
        ],
    )
    g_view = em.as_strided(gy, space, [g.ocg * gs[1], gs[1], 0, *[0] * nsp, gs[0], *gs[2:]])
    gw = em.reduce("sum", em.mul(g_view, x_view), list(range(3 + nsp, len(space))), False)
    return em.reshape(gw, [g.oc, g.cg, *win.kernel])


@converts("aten.convolution.default")
def _convolution(c: Call) -> Result:
    em = c.em
    x, w = c.tensor("input"), c.tensor("weight")
    g = _conv_geometry(c, x, w, c.out_shape)
    if c.a.get("transposed"):
        y = _conv_input_grad(em, x, w, g)
    else:
        y = _conv_forward(em, x, w, g)
    if c.a.get("bias") is not None:
        bias = c.tensor("bias")
        y = em.add(y, em.reshape(bias, (*shape_of(bias), *[1] * len(g.win.size))))
    return y


@converts("aten.convolution_backward.default")
def _convolution_backward(c: Call) -> Result:
    em = c.em
    gy, x, w = c.tensor("grad_output"), c.tensor("input"), c.tensor("weight")
    g = _conv_geometry(c, x, w, shape_of(gy))
    want_input, want_weight, want_bias = (bool(m) for m in c.a["output_mask"])
    gx = gw = gb = None
    if c.a.get("transposed"):  # the direct convolution's output is x, its input gy
        gx = _conv_forward(em, gy, w, g) if want_input else None
        gw = _conv_weight_grad(em, x, gy, g) if want_weight else None
    else:
        gx = _conv_input_grad(em, gy, w, g) if want_input else None
        gw = _conv_weight_grad(em, gy, x, g) if want_weight else None
    if want_bias:
        gb = em.reduce("sum", gy, [0, *range(2, len(shape_of(gy)))], False)
    return gx, gw, gb


# ------------------------------------------------------------------------------------------
# pooling
# ------------------------------------------------------------------------------------------


def _positions(em: Emitter, w: Window) -> SSAValue:
    """``[*O, *K]`` i64: the flat index (in the unpadded ``[*S]`` plane, torch's index of a max
    pooling) of the element each window position reads."""
    # The index is affine in (o, k): sum_i (o_i*s_i + k_i*d_i) * rm_i - base (``base`` the
    # padding's share). So it is a window over the ramp ``j - base``: three small kernels
    # whatever the number of dims, instead of a few ops per dim.
    rm = _row_major(w.size)
    base = sum(p * st for p, st in zip(w.padding, rm, strict=True))
    strides = [
        *(s * st for s, st in zip(w.stride, rm, strict=True)),
        *(d * st for d, st in zip(w.dilation, rm, strict=True)),
    ]
    extent = sum(st * (n - 1) for st, n in zip(strides, [*w.out, *w.kernel], strict=True))
    ramp = em.sub(em.iota(0, (extent + 1,)), base)
    return em.as_strided(ramp, [*w.out, *w.kernel], strides)


def _expand_windows(em: Emitter, y: SSAValue, w: Window) -> SSAValue:
    """``y[*lead, *O]`` as ``[*lead, *O, 1..]``, to broadcast against the windows."""
    return em.reshape(y, [*shape_of(y), *[1] * len(w.kernel)])


def _max_pool(c: Call) -> Result:
    em = c.em
    x = c.tensor("self")
    out = c.out(0)[0]
    nsp = _spatial_dims(c, len(shape_of(x)))
    w = _window(c, shape_of(x)[-nsp:], out[-nsp:])
    windows = _windows(em, _pad_for(em, x, w, -math.inf), w)
    kdims = _window_dims(len(shape_of(windows)), w)
    y = em.reduce("max", windows, kdims, False)
    is_max = em.binary("eq", windows, _expand_windows(em, y, w))
    candidates = em.select(is_max, _positions(em, w), _NO_INDEX)
    indices = em.reduce("min", candidates, kdims, False)
    return y, indices


def _spatial_dims(c: Call, rank: int) -> int:
    """The number of pooled dims: 2 for ``max_pool2d``..., from the op's name."""
    name = str(c.node.target)
    for n in (1, 2, 3):
        if f"pool{n}d" in name:
            if rank not in (n + 1, n + 2):
                raise ConversionError(f"{n}-d pooling of a rank-{rank} tensor")
            return n
    raise ConversionError(f"pooling op {name}")


@converts("aten.max_pool2d_with_indices.default", "aten.max_pool3d_with_indices.default")
def _max_pool_with_indices(c: Call) -> Result:
    return _max_pool(c)


@converts(
    "aten.max_pool2d_with_indices_backward.default",
    "aten.max_pool3d_with_indices_backward.default",
)
def _max_pool_backward(c: Call) -> Result:
    em = c.em
    gy, x, indices = c.tensor("grad_output"), c.tensor("self"), c.tensor("indices")
    nsp = _spatial_dims(c, len(shape_of(x)))
    w = _window(c, shape_of(x)[-nsp:], shape_of(gy)[-nsp:])
    hit = em.binary("eq", _expand_windows(em, em.cast(indices, i64), w), _positions(em, w))
    grads = em.select(hit, _expand_windows(em, gy, w), 0.0)
    return _col2im(em, grads, w)


def _avg_divisor(c: Call, w: Window) -> SSAValue | float:
    """What each window's sum is divided by: ``divisor_override``, or the number of elements
    the window covers (padding included or not, never past the padding: torch's rule), a
    ``[*O]`` tensor when it varies (counted on the fabric from a padded mask)."""
    em = c.em
    override = c.a.get("divisor_override")
    if override is not None:
        return float(override)
    include_pad = bool(c.a.get("count_include_pad", True))
    padded = w.padded
    if include_pad:
        region = [min(n + 2 * p, e) for n, p, e in zip(w.size, w.padding, padded, strict=True)]
        low = [0] * len(region)
    else:
        region = list(w.size)
        low = list(w.padding)
    high = [e - r - lo for e, r, lo in zip(padded, region, low, strict=True)]
    if not any(low) and not any(high):
        return float(math.prod(w.kernel))
    mask = em.pad(em.fill(1.0, region, f32), low, high)
    counts = em.reduce("sum", _windows(em, mask, w), _window_dims(2 * len(w.size), w), False)
    return counts


@converts("aten.avg_pool2d.default", "aten.avg_pool3d.default")
def _avg_pool(c: Call) -> Result:
    em = c.em
    x = c.tensor("self")
    nsp = _spatial_dims(c, len(shape_of(x)))
    w = _window(c, shape_of(x)[-nsp:], c.out_shape[-nsp:], dilation=False)
    windows = _windows(em, _pad_for(em, x, w), w)
    total = em.reduce("sum", windows, _window_dims(len(shape_of(windows)), w), False)
    return em.div(total, _avg_divisor(c, w))


@converts("aten.avg_pool2d_backward.default", "aten.avg_pool3d_backward.default")
def _avg_pool_backward(c: Call) -> Result:
    em = c.em
    gy, x = c.tensor("grad_output"), c.tensor("self")
    nsp = _spatial_dims(c, len(shape_of(x)))
    w = _window(c, shape_of(x)[-nsp:], shape_of(gy)[-nsp:], dilation=False)
    share = _expand_windows(em, em.div(gy, _avg_divisor(c, w)), w)
    grads = em.broadcast(share, [*shape_of(gy), *w.kernel])
    return _col2im(em, grads, w)


def _adaptive_weights(em: Emitter, size: int, out: int) -> SSAValue:
    """``[out, size]`` f32: row ``o`` averages torch's adaptive window ``[floor(o*size/out),
    ceil((o+1)*size/out))``."""
    o = em.iota(0, (out, 1))
    h = em.iota(1, (1, size))
    start = em.div(em.mul(o, size), out)
    end = em.div(em.add(em.mul(o, size), size + out - 1), out)
    inside = em.binary("and", em.binary("ge", h, start), em.binary("lt", h, end))
    share = em.div(1.0, em.cast(em.sub(end, start), f32))
    return em.select(inside, share, 0.0)


def _along(em: Emitter, x: SSAValue, dim: int, a: SSAValue) -> SSAValue:
    """``y[.., i, ..] = sum_j a[i, j] * x[.., j, ..]`` along ``dim`` (a batched matmul)."""
    shape = shape_of(x)
    m, n = shape_of(a)
    before, after = math.prod(shape[:dim]), math.prod(shape[dim + 1 :])
    x3 = em.reshape(x, (before, n, after))
    a3 = em.broadcast(em.reshape(a, (1, m, n)), (before, m, n))
    y = em.matmul(a3, x3)
    return em.reshape(y, (*shape[:dim], m, *shape[dim + 1 :]))


@converts("aten._adaptive_avg_pool2d.default", "aten._adaptive_avg_pool3d.default")
def _adaptive_avg_pool(c: Call) -> Result:
    em = c.em
    y = c.tensor("self")
    shape = shape_of(y)
    out = c.out_shape
    nsp = _spatial_dims(c, len(shape))
    for d in range(len(shape) - nsp, len(shape)):
        if out[d] != shape[d]:
            y = _along(em, y, d, _adaptive_weights(em, shape[d], out[d]))
    return y


@converts(
    "aten._adaptive_avg_pool2d_backward.default", "aten._adaptive_avg_pool3d_backward.default"
)
def _adaptive_avg_pool_backward(c: Call) -> Result:
    em = c.em
    g, x = c.tensor("grad_output"), c.tensor("self")
    shape = shape_of(x)
    nsp = _spatial_dims(c, len(shape))
    for d in range(len(shape) - nsp, len(shape)):
        if shape_of(g)[d] != shape[d]:
            weights = _adaptive_weights(em, shape[d], shape_of(g)[d])
            g = _along(em, g, d, em.transpose(weights, [1, 0]))
    return g


# ------------------------------------------------------------------------------------------
# padding
# ------------------------------------------------------------------------------------------


@converts("aten.constant_pad_nd.default")
def _constant_pad_nd(c: Call) -> Result:
    em = c.em
    x = c.tensor("self")
    shape = shape_of(x)
    pads = [int(p) for p in c.a["pad"]]
    if len(pads) % 2 or len(pads) // 2 > len(shape):
        raise ConversionError(f"pad {pads} for a rank-{len(shape)} tensor")
    low, high = [0] * len(shape), [0] * len(shape)
    for i in range(len(pads) // 2):
        d = len(shape) - 1 - i
        low[d], high[d] = pads[2 * i], pads[2 * i + 1]
    if any(lo < 0 for lo in low) or any(hi < 0 for hi in high):  # negative padding crops
        crop_lo = [max(0, -lo) for lo in low]
        kept = [n - a - max(0, -hi) for n, a, hi in zip(shape, crop_lo, high, strict=True)]
        if any(k < 0 for k in kept):
            raise ConversionError(f"pad {pads} crops more than the tensor")
        rm = _row_major(shape)
        offset = sum(a * st for a, st in zip(crop_lo, rm, strict=True))
        x = em.as_strided(x, kept, rm, offset)
        low, high = [max(0, lo) for lo in low], [max(0, hi) for hi in high]
    value = c.a.get("value", 0) or 0
    padded = em.pad(x, low, high)
    if value == 0 or padded is x:
        return padded
    inside = em.pad(em.fill(True, shape_of(x), i1), low, high)
    return em.select(inside, padded, em.as_tensor(value, elt_of(padded)))
