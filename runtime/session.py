"""Training and inference sessions: a PEF, its state, and the DRAM dict the sections share.

A training step runs the sections in PEF order (forward, backward, optimizer) over one DRAM dict
holding the state (parameters, buffers, optimizer state), the batch (``input.<i>``,
``target.<i>``) and the hyperparameters (0-d f32 arrays). Sections replace DRAM entries with
their outputs, so the optimizer's updated parameters and state become the session's new state.
An activation or spill is dropped from a step's DRAM once the last section reading it has run
(``TrainingSession.keep_activations`` keeps them all in ``last_dram``, for inspection).

The session counts steps (``step_count``, starting at 0 or at a resumed checkpoint's step) and
increments the count just before the first optimizer section of a step; for AdamW it then
computes ``bias_correction1 = 1 - beta1**step`` and ``bias_correction2_sqrt =
sqrt(1 - beta2**step)`` (from the ``beta1``/``beta2`` hyperparameters) like torch does, and
``one_minus_beta1``, ``one_minus_beta2`` in double precision (as torch's ``1 - beta``).

Host arrays are converted to the symbol's dtype when the kind fits (any float to f32, any integer
to i64, bool to i1); a wrong shape or kind is a ``SessionError`` naming the tensor. Keys that
are not symbols of the PEF are ignored in batches and hyperparameters and carried along
unchanged in the state (so a checkpoint keeps them).

A non-persistent buffer (``meta.non_persistent``: registered with ``persistent=False``, absent
from checkpoints) must be given in the state like any buffer, from the model; a session refuses
one whose values differ from those the PEF was compiled for (their digest is in the PEF).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from runtime.distributed import Communicator
from runtime.dtypes import HOST_KINDS
from runtime.errors import RduError
from runtime.fabric import DTYPES, Fabric
from runtime.pef.digest import value_sha256
from runtime.pef.schema import Collective, Program, Section, Symbol

STATE_ROLES = ("parameter", "buffer", "optimizer_state")
BATCH_ROLES = ("input", "label")
ADAMW_COEFFICIENTS = (
    "bias_correction1",
    "bias_correction2_sqrt",
    "one_minus_beta1",
    "one_minus_beta2",
)
COMPUTED_HYPERPARAMETERS = (*ADAMW_COEFFICIENTS, "rng_seed")
_KINDS = HOST_KINDS


class SessionError(RduError):
    """State, batch or hyperparameters that do not fit the PEF."""


@dataclass(frozen=True)
class StepResult:
    """What a step yields: the loss, the model outputs, and the gradients (by symbol name)."""

    loss: float
    outputs: dict[str, np.ndarray]
    gradients: dict[str, np.ndarray] = field(default_factory=dict)


def conform(sym: Symbol, value: object, what: str) -> np.ndarray:
    """``value`` as an array of ``sym``'s shape and dtype, or a ``SessionError``."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:  # e.g. a ragged list
        raise SessionError(f"{what} '{sym.name}' is not an array: {error}") from None
    want = DTYPES[sym.dtype]
    if array.shape != tuple(sym.shape):
        raise SessionError(
            f"{what} '{sym.name}' has shape {list(array.shape)}, the PEF expects {sym.shape}"
        )
    if array.dtype != want:
        if array.dtype.kind not in _KINDS[sym.dtype]:
            raise SessionError(
                f"{what} '{sym.name}' is {array.dtype} {list(array.shape)}, the PEF expects "
                f"{sym.dtype} {sym.shape}"
            )
        array = array.astype(want)
    return array


class _Session:
    """What both sessions share: the fabric, the symbols, the state."""

    def __init__(self, program: Program, state: Mapping[str, object], sections: list[Section]):
        self.program = program
        self.fabric = Fabric(program)
        self.symbols: dict[str, Symbol] = {s.name: s for s in program.meta.symbols}
        self._sections = sections
        self._reads = {program.meta.symbols[i].name for s in sections for i in s.inputs}
        self._required_cache: dict[tuple[str, ...], list[Symbol]] = {}
        self._state: dict[str, np.ndarray] = {}
        for name, value in state.items():
            sym = self.symbols.get(name)
            if sym is not None and sym.role in STATE_ROLES:
                self._state[name] = conform(sym, value, sym.role.replace("_", " "))
            else:
                self._state[name] = np.asarray(value)

    def _required(self, roles: Iterable[str]) -> list[Symbol]:
        """The symbols of ``roles`` that the session's sections read."""
        key = tuple(roles)
        if key not in self._required_cache:
            self._required_cache[key] = [
                s for s in self.program.meta.symbols if s.role in key and s.name in self._reads
            ]
        return self._required_cache[key]

    def _check_state(self) -> None:
        non_persistent = {
            self.program.meta.symbols[e.symbol].name: e.sha256
            for e in self.program.meta.non_persistent
        }
        for sym in self._required(("parameter", "buffer")):
            if sym.name not in self._state:
                why = ""
                if sym.name in non_persistent:
                    why = (
                        " (the model registers it with persistent=False: checkpoints lack it, "
                        "its value comes from the model's named_buffers())"
                    )
                raise SessionError(
                    f"missing {sym.role} '{sym.name}' ({sym.shape} {sym.dtype}) in the state{why}"
                )
            digest = non_persistent.get(sym.name)
            if digest and value_sha256(sym.dtype, self._state[sym.name]) != digest:
                raise SessionError(
                    f"buffer '{sym.name}' (persistent=False, taken from the model) holds other "
                    "values than the PEF was compiled for: compile the PEF from this model "
                    "(same model arguments and seed)"
                )

    def _batch(self, batch: Mapping[str, object]) -> dict[str, np.ndarray]:
        out = {}
        for sym in self._required(BATCH_ROLES):
            if sym.name not in batch:
                raise SessionError(
                    f"missing {sym.role} '{sym.name}' ({sym.shape} {sym.dtype}) in the batch"
                )
        for name, value in batch.items():
            sym = self.symbols.get(name)
            if sym is not None and sym.role in BATCH_ROLES:
                out[name] = conform(sym, value, sym.role)
        return out

    def _results(self, dram: Mapping[str, np.ndarray], role: str) -> dict[str, np.ndarray]:
        return {
            s.name: dram[s.name]
            for s in self.program.meta.symbols
            if s.role == role and s.name in dram
        }

    def state(self) -> dict[str, np.ndarray]:
        """The current parameters, buffers and optimizer state (and any extra entries given)."""
        return dict(self._state)


class TrainingSession(_Session):
    """Runs training steps of a training PEF (forward, backward, optimizer sections).

    With a ``communicator`` the session is one rank of a data-parallel job: it starts from rank
    0's state and step (as torch's DistributedDataParallel does) and runs the PEF's collectives
    (``meta.collectives``: the gradient all-reduce before the optimizer) before their sections.
    Without one, a data-parallel PEF trains as a job of one rank (its collectives change
    nothing). A data-parallel step's loss is the mean of the ranks' losses, carried in the
    gradient all-reduce (one value more, no collective more): every rank sees the same loss, so
    a NaN on one rank's shard stops every rank at the same step.
    """

    def __init__(
        self,
        program: Program,
        state: Mapping[str, object],
        *,
        step: int = 0,
        communicator: Communicator | None = None,
    ) -> None:
        super().__init__(program, state, list(program.sections))
        self.step_count = step
        self._check_state()
        for sym in self.program.meta.symbols:
            if sym.role == "optimizer_state" and sym.name not in self._state:
                self._state[sym.name] = np.zeros(sym.shape, DTYPES[sym.dtype])
        self.keep_activations = False
        """Keep every activation and spill in ``last_dram`` (for inspection); by default each
        is dropped from the step's DRAM once the last section reading it has run."""
        self.last_dram: dict[str, np.ndarray] = {}
        """The DRAM of the last step (gradients included; activations with
        ``keep_activations``), for inspection."""
        self._dead_after = _dead_after(program)
        self.communicator = communicator
        self._collectives: dict[str, list[Collective]] = {}
        if communicator is not None:
            if not program.meta.data_parallel:
                raise SessionError(
                    "the PEF was not compiled for data-parallel training (no gradients are "
                    "marked for all-reduce): recompile with rdu-compile --data-parallel"
                )
            for collective in program.meta.collectives:
                self._collectives.setdefault(collective.before, []).append(collective)
            self._start_from_rank_0()

    def _start_from_rank_0(self) -> None:
        """Every rank takes rank 0's state and step count."""
        assert self.communicator is not None
        names = sorted(n for n, s in self.symbols.items() if s.role in STATE_ROLES)
        names = [n for n in names if n in self._state]
        step = np.asarray([self.step_count], dtype=np.int64)
        values = self.communicator.broadcast(
            [self._state[n] for n in names] + [step], "the broadcast of rank 0's initial state"
        )
        self._state.update(zip(names, values[:-1], strict=True))
        self.step_count = int(values[-1][0])

    def _run_collectives(
        self, section: str, dram: dict[str, np.ndarray], step: int, *, with_loss: bool
    ) -> bool:
        """The PEF's collectives that run before ``section`` in step ``step``, on ``dram``;
        ``with_loss``: the first all-reduce averages the loss too. Whether it did."""
        assert self.communicator is not None
        symbols = self.program.meta.symbols
        for collective in self._collectives.get(section, ()):
            names = [symbols[i].name for i in collective.symbols if symbols[i].name in dram]
            if not names:
                continue
            what = f"the {collective.op} of {len(names)} tensors"
            if with_loss and collective.op == "allreduce_mean" and "loss" in dram:
                names.append("loss")
                what += " (and the loss)"
                with_loss = False
            what += f" before section '{section}' in step {step}"
            arrays = [dram[n] for n in names]
            if collective.op == "broadcast":
                values = self.communicator.broadcast(arrays, what)
            else:
                values = self.communicator.allreduce_mean(arrays, what)
            dram.update(zip(names, values, strict=True))
        return not with_loss

    def _hyper(self, hyper: Mapping[str, float]) -> dict[str, np.ndarray]:
        out = {}
        for sym in self._required(("hyperparameter",)):
            if sym.name in COMPUTED_HYPERPARAMETERS:
                continue
            if sym.name not in hyper:
                raise SessionError(f"missing hyperparameter '{sym.name}'")
            try:
                value = np.float32(float(hyper[sym.name]))
            except (TypeError, ValueError):
                raise SessionError(
                    f"hyperparameter '{sym.name}' is {hyper[sym.name]!r}, not a number"
                ) from None
            out[sym.name] = conform(sym, value, "hyperparameter")
        return out

    seed: int = 0
    """The base of the random numbers (dropout): each step's ``rng_seed`` input is
    ``(seed mod 2**23) << 40 | step``, so a run is reproducible from its seed and no two steps
    (nor the 256 random ops a section may hold, at ``stream << 32``) share numbers."""

    def _rng_seed(self, step: int) -> dict[str, np.ndarray]:
        """The ``rng_seed`` input of step ``step`` (nothing if no section reads it)."""
        if "rng_seed" not in self._reads:
            return {}
        return {"rng_seed": np.asarray(rng_seed_value(self.seed, step), dtype=np.int64)}

    def _bias_corrections(self, hyper: Mapping[str, float]) -> dict[str, np.ndarray]:
        needed = [n for n in ADAMW_COEFFICIENTS if n in self._reads]
        if not needed:
            return {}
        for beta in ("beta1", "beta2"):
            if beta not in hyper:
                raise SessionError(f"missing hyperparameter '{beta}' (for the bias corrections)")
        values = adamw_coefficients(float(hyper["beta1"]), float(hyper["beta2"]), self.step_count)
        return {n: np.asarray(values[n], dtype=np.float32) for n in needed}

    def step(self, batch: Mapping[str, object], hyper: Mapping[str, float]) -> StepResult:
        """One training step; the state is updated only if every section ran."""
        dram: dict[str, np.ndarray] = dict(self._state)
        dram.update(self._batch(batch))
        dram.update(self._hyper(hyper))
        step = self.step_count
        dram.update(self._rng_seed(step))
        stepped = loss_agreed = False
        for section in self._sections:
            if section.kind == "optimizer" and not stepped:
                stepped = True
                self.step_count += 1
                dram.update(self._bias_corrections(hyper))
            try:
                if section.name in self._collectives:
                    loss_agreed |= self._run_collectives(
                        section.name, dram, step + 1, with_loss=not loss_agreed
                    )
                self.fabric.run_section(section.name, dram)
            except BaseException:
                self.step_count = step
                raise
            if not self.keep_activations:
                for name in self._dead_after.get(section.name, ()):
                    dram.pop(name, None)
        if self.communicator is not None and not loss_agreed and "loss" in dram:
            what = f"the all-reduce of the loss in step {step + 1}"
            dram["loss"] = self.communicator.allreduce_mean([dram["loss"]], what)[0]
        for name, sym in self.symbols.items():
            if sym.role in STATE_ROLES and name in dram:
                self._state[name] = dram[name]
        self.last_dram = dram
        loss = dram.get("loss")
        return StepResult(
            loss=float(loss) if loss is not None else math.nan,
            outputs=self._results(dram, "output"),
            gradients=self._results(dram, "gradient"),
        )

    def evaluate(self, batch: Mapping[str, object]) -> tuple[float, dict[str, np.ndarray]]:
        """The loss and model outputs for ``batch`` from the forward section alone.

        Nothing is trained: the state and the step count stay as they are (test-split metrics).
        """
        dram: dict[str, np.ndarray] = dict(self._state)
        dram.update(self._batch(batch))
        dram.update(self._rng_seed(self.step_count))
        for section in self._sections:
            if section.kind == "forward":
                self.fabric.run_section(section.name, dram)
        loss = dram.get("loss")
        return (
            float(loss) if loss is not None else math.nan,
            self._results(dram, "output"),
        )


_TRANSIENT_ROLES = ("activation", "spill")


def _dead_after(program: Program) -> dict[str, list[str]]:
    """By section name, the activations and spills no later section of a step reads."""
    symbols = program.meta.symbols
    last: dict[str, str] = {}
    for section in program.sections:
        for index in section.inputs:
            last[symbols[index].name] = section.name
        for out in section.outputs:
            last.setdefault(symbols[out.symbol].name, section.name)
    dead: dict[str, list[str]] = {}
    for sym in symbols:
        if sym.role in _TRANSIENT_ROLES and sym.name in last:
            dead.setdefault(last[sym.name], []).append(sym.name)
    return dead


def adamw_coefficients(beta1: float, beta2: float, step: int) -> dict[str, float]:
    """AdamW's factors for step ``step`` (counted from 1), in double precision as torch computes
    them (``ADAMW_COEFFICIENTS``: ``1 - beta2`` in float32 from a rounded 0.999 is 1.3e-5 off)."""
    return {
        "bias_correction1": 1.0 - beta1**step,
        "bias_correction2_sqrt": math.sqrt(1.0 - beta2**step),
        "one_minus_beta1": 1.0 - beta1,
        "one_minus_beta2": 1.0 - beta2,
    }


def rng_seed_value(seed: int, step: int) -> int:
    """The ``rng_seed`` input of step ``step`` of a run seeded ``seed`` (``rdu-run --seed``):
    ``(seed mod 2**23) << 40 | step`` (rdu-test draws torch's dropout masks from it too)."""
    return ((seed % (1 << 23)) << 40) | (step % (1 << 32))


class InferenceSession(_Session):
    """Runs the forward section(s) of a PEF on batches; the state never changes."""

    def __init__(self, program: Program, state: Mapping[str, object]) -> None:
        super().__init__(program, state, [s for s in program.sections if s.kind == "forward"])
        self._check_state()

    def run(self, batch: Mapping[str, object]) -> dict[str, np.ndarray]:
        """The model outputs (``output.<i>``) for ``batch``."""
        dram: dict[str, np.ndarray] = dict(self._state)
        dram.update(self._batch(batch))
        for section in self._sections:
            self.fabric.run_section(section.name, dram)
        return self._results(dram, "output")
