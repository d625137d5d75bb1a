"""The fabric's random numbers on the torch side, for rdu-test's reference runs only.

The fabric draws dropout's mask (and any random op's numbers) from a counter-based generator
(the ``rand`` opcode, runtime/machine/opcodes.py): a float32 in ``[0, 1)`` from a key and each
element's row-major index. The compiler gives every random op of the forward graph its own
stream, in the order it converts them (``GraphBuilder.random_streams``: FX node -> stream), and
the key of stream ``s`` in a step is ``rng_seed + (s << 32)``, ``rng_seed`` being what the session
computes from the run's seed and the step (``runtime.session.rng_seed_value``).

Here the same numbers are computed again (an independent numpy transcription of the ISA's
definition, so a test comparing masks also checks the fabric's generator) and handed to torch:

- :func:`random_op` runs one random ATen op (``native_dropout``, ``rand``, ``rand_like``,
  ``bernoulli``, ``uniform``, ``exponential``; a graph node) on a
  stream's numbers; rdu-test's FX run of the joint graph calls it for the nodes that have a
  stream;
- :class:`FabricRandomMode`, a ``TorchDispatchMode``, replaces the random draws of an eager torch
  run (``bernoulli_`` under ``F.dropout`` on the CPU, ``native_dropout``, ``rand``, ``uniform_``,
  ``exponential_``) one by one by
  the stream of the graph node in the same place (the k-th draw of the run is the k-th random
  node of the traced forward graph: both follow the order of execution), checking the shape and
  the probability of each against the node's.

A new random op (one stream per op) needs a case in :func:`random_op` and, for eager runs, in
``_EAGER_OPS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB

aten = torch.ops.aten


class RandomMismatch(Exception):
    """torch's run draws random numbers where the compiled graph does not (or other ones)."""


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, modulo 2**64 (uint64 arithmetic wraps)."""
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(_MIX1)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(_MIX2)
    return z ^ (z >> np.uint64(31))


def stream_key(rng_seed: int, stream: int) -> int:
    """The key the fabric hashes for random op ``stream``: ``rng_seed + (stream << 32)``
    (an i64 add, modulo 2**64)."""
    return (int(rng_seed) + (int(stream) << 32)) % (1 << 64)


def uniform(key: int, shape: Sequence[int]) -> np.ndarray:
    """The fabric's ``rand`` numbers for ``key`` over ``shape``: element ``n`` (row-major) is
    ``(mix(mix(key) + (n + 1) * G) >> 40) * 2**-24``, a float32 in ``[0, 1)``."""
    with np.errstate(over="ignore"):
        base = _mix(np.asarray([key], dtype=np.uint64))[0]
        n = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.uint64)
        z = _mix(base + (n + np.uint64(1)) * np.uint64(_GOLDEN))
    return ((z >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)).reshape(tuple(shape))


def dropout_keep(key: int, shape: Sequence[int], p: float) -> torch.Tensor:
    """Dropout's mask on the fabric: ``u >= p`` (p as float32), so ``P(keep) = 1 - p``."""
    return torch.from_numpy(uniform(key, shape) >= np.float32(p))


def bernoulli(key: int, like: torch.Tensor, p: float | torch.Tensor) -> torch.Tensor:
    """``bernoulli`` on the fabric: ``u < p`` (p as float32) in ``like``'s dtype and shape
    (in-place dropout on the CPU draws its keep mask so, with ``p`` the keep probability)."""
    u = torch.from_numpy(uniform(key, like.shape))
    threshold = p.to(torch.float32) if isinstance(p, torch.Tensor) else np.float32(p).item()
    return (u < threshold).to(like.dtype)


def between(key: int, like: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``uniform_(low, high)`` on the fabric: ``u * (high - low) + low`` in float32, in
    ``like``'s dtype and shape."""
    u = torch.from_numpy(uniform(key, like.shape))
    return (u * np.float32(high - low) + np.float32(low)).to(like.dtype)


def exponential(key: int, like: torch.Tensor, lambd: float) -> torch.Tensor:
    """``exponential_(lambd)`` on the fabric: ``log(1 - u) / -lambd`` in float32, in ``like``'s
    dtype and shape."""
    u = torch.from_numpy(uniform(key, like.shape))
    return (torch.log(1 - u) / np.float32(-lambd)).to(like.dtype)


def random_op(
    target: Any, args: Sequence[Any], key: int, kwargs: dict[str, Any] | None = None
) -> Any:
    """The value of random ATen op ``target`` called with ``args`` (positional, as in the FX
    graph; ``kwargs``: its keywords, of which the bounds of ``uniform`` and the rate of
    ``exponential`` are read), drawing the fabric's numbers of ``key``."""
    kwargs = kwargs or {}
    if target == aten.uniform.default:
        low = float(args[1] if len(args) > 1 else kwargs.get("from", 0.0))
        high = float(args[2] if len(args) > 2 else kwargs.get("to", 1.0))
        return between(key, args[0], low, high)
    if target == aten.exponential.default:
        return exponential(
            key, args[0], float(args[1] if len(args) > 1 else kwargs.get("lambd", 1.0))
        )
    if target == aten.native_dropout.default:
        x, p = args[0], float(args[1])
        keep = dropout_keep(key, x.shape, p)
        scale = 0.0 if p >= 1 else 1.0 / (1.0 - p)
        return x.mul(keep).mul_(scale), keep
    if target == aten.rand.default:
        shape = args[0]
        return torch.from_numpy(uniform(key, shape))
    if target == aten.rand_like.default:
        return torch.from_numpy(uniform(key, args[0].shape)).to(args[0].dtype)
    if target in (aten.bernoulli.p, aten.bernoulli.default):
        return bernoulli(key, args[0], args[1] if target == aten.bernoulli.p else args[0])
    raise RandomMismatch(f"no fabric form of the random op {target}")


@dataclass
class Draw:
    """A random node of the traced forward graph: what an eager run's draw must match."""

    node: str  # the FX node's name
    target: Any  # its ATen op
    shape: tuple[int, ...]
    p: float | None  # native_dropout: the drop probability; bernoulli.p: the keep one; else None
    key: int | None  # the fabric's key; None: the compiler gave it no stream (a dead node)


def _eager_kind(func: Any) -> str | None:
    """``dropout`` or ``rand`` when ``func`` is a random draw of an eager run, else None."""
    if func in (aten.bernoulli_.float, aten.native_dropout.default):
        return "dropout"
    if func in (aten.rand.default, aten.rand_like.default):
        return "rand"
    if func in (aten.bernoulli.p, aten.bernoulli.default):
        return "bernoulli"
    if func in (aten.uniform_.default, aten.uniform.default):
        return "uniform"
    if func in (aten.exponential_.default, aten.exponential.default):
        return "exponential"
    return None


_EAGER_OPS = {
    aten.native_dropout.default: "dropout",
    aten.bernoulli.p: "dropout",  # in-place dropout traces as bernoulli(empty, 1 - p)
    aten.rand.default: "rand",
    aten.rand_like.default: "rand",
    aten.bernoulli.default: "bernoulli",
    aten.uniform.default: "uniform",
    aten.exponential.default: "exponential",
}
"""Graph random op -> the kind of eager draw that stands for it."""


def _initializes(args: Sequence[Any]) -> bool:
    """Whether a draw fills a parameter in place: ``torch.nn.init`` of a layer the forward
    builds (BigBird's first forward on a short sequence switches to full attention, making new
    ``Linear`` layers, then taking the old ones' weights), not a random op of the step."""
    return bool(args) and isinstance(args[0], torch.nn.Parameter)


class FabricRandomMode(TorchDispatchMode):
    """Eager torch with the fabric's random numbers: the k-th random draw becomes ``draws[k]``.

    ``F.dropout`` on the CPU draws ``empty_like(x).bernoulli_(1 - p)`` and multiplies; the
    mode fills that tensor with the fabric's mask (the backward multiplies by the same tensor).
    A draw that does not fit its node (another op, shape or probability), or more draws than
    nodes, raises :class:`RandomMismatch`; :meth:`check_done` says whether every node was drawn.
    """

    def __init__(self, draws: Sequence[Draw]) -> None:
        super().__init__()
        self.draws = list(draws)
        self.count = 0
        self.masks: list[torch.Tensor] = []
        """The dropout masks drawn (bool), in order: for tests and inspection."""

    def _next(self, kind: str, shape: tuple[int, ...], what: str) -> Draw:
        if self.count >= len(self.draws):
            raise RandomMismatch(
                f"torch draws more random numbers ({what} of shape {list(shape)}) than the "
                f"compiled graph has random ops ({len(self.draws)})"
            )
        draw = self.draws[self.count]
        self.count += 1
        if _EAGER_OPS.get(draw.target) != kind or draw.shape != shape:
            raise RandomMismatch(
                f"torch's random draw {self.count} ({what} of shape {list(shape)}) is not the "
                f"graph's random op {draw.node} ({draw.target} of shape {list(draw.shape)})"
            )
        return draw

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        kind = _eager_kind(func)
        if kind is None or _initializes(args):
            return func(*args, **kwargs)
        if func == aten.bernoulli_.float:
            # p is left out when it is the schema's default (0.5: dropout with p = 0.5)
            noise = args[0]
            keep_probability = float(args[1] if len(args) > 1 else kwargs.get("p", 0.5))
            if keep_probability >= 1.0:  # p == 0: every element kept, no random op compiled
                return func(*args, **kwargs)
            draw = self._next(kind, tuple(noise.shape), "bernoulli_")
            assert draw.p is not None
            if draw.target == aten.bernoulli.p:  # the graph draws the keep mask itself
                if abs(keep_probability - draw.p) > 1e-12:
                    raise RandomMismatch(
                        f"torch keeps with p={keep_probability}, the graph's {draw.node} "
                        f"with p={draw.p}"
                    )
                if draw.key is None:
                    return func(*args, **kwargs)
                keep = bernoulli(draw.key, noise, draw.p)
                self.masks.append(keep.bool())
                with torch.no_grad():
                    noise.copy_(keep)
                return noise
            if abs((1.0 - keep_probability) - draw.p) > 1e-12:
                raise RandomMismatch(
                    f"torch drops with p={1.0 - keep_probability}, the graph's {draw.node} "
                    f"with p={draw.p}"
                )
            if draw.key is None:
                return func(*args, **kwargs)
            keep = dropout_keep(draw.key, noise.shape, draw.p)
            self.masks.append(keep)
            with torch.no_grad():
                noise.copy_(keep)
            return noise
        if func == aten.native_dropout.default:
            x, p = args[0], float(args[1])
            train = args[2] if len(args) > 2 else kwargs.get("train", True)
            if p <= 0 or train is False:
                return func(*args, **kwargs)
            draw = self._next(kind, tuple(x.shape), "native_dropout")
            if draw.key is None:
                return func(*args, **kwargs)
            out, keep = random_op(func, args, draw.key)
            self.masks.append(keep)
            return out, keep
        if kind in ("uniform", "exponential"):  # Tensor.uniform_(low, high), exponential_()
            like = args[0]
            draw = self._next(kind, tuple(like.shape), str(func))
            if draw.key is None:
                return func(*args, **kwargs)
            values = random_op(draw.target, args, draw.key, kwargs)
            if func in (aten.uniform_.default, aten.exponential_.default):
                with torch.no_grad():
                    like.copy_(values)
                return like
            return values
        if kind == "bernoulli":  # torch.bernoulli(probs) or (x, p)
            like = args[0]
            draw = self._next(kind, tuple(like.shape), str(func))
            if draw.key is None:
                return func(*args, **kwargs)
            p = args[1] if func == aten.bernoulli.p else args[0]
            return bernoulli(draw.key, like, p)
        # rand / rand_like
        shape = tuple(args[0] if func == aten.rand.default else args[0].shape)
        draw = self._next(kind, shape, str(func))
        if draw.key is None:
            return func(*args, **kwargs)
        like = args[0].dtype if func == aten.rand_like.default else torch.get_default_dtype()
        dtype = kwargs.get("dtype") or like
        return torch.from_numpy(uniform(draw.key, shape)).to(dtype)

    def check_done(self) -> None:
        """Raise :class:`RandomMismatch` unless every random node of the graph was drawn."""
        if self.count != len(self.draws):
            missing = self.draws[self.count]
            raise RandomMismatch(
                f"torch drew {self.count} random tensors, the compiled graph has "
                f"{len(self.draws)} random ops (the first not drawn: {missing.node})"
            )
