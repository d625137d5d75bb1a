"""The model.py contract: load a user's model file and check what it provides.

A model.py defines module-level functions (see the README for the full contract):

- ``model(args) -> nn.Module`` (required)
- ``example_inputs(args) -> tuple[Tensor, ...]`` (required): one batch of model inputs
- ``example_targets(args) -> tuple[Tensor, ...]``: one batch of loss targets (training)
- ``loss(outputs, *targets) -> Tensor``: a 0-d loss (training)
- ``optimizer(params, args) -> torch.optim.Optimizer``: SGD (default) or AdamW
- ``data(split, args)``: yields ``((inputs...), (targets...))`` batches for rdu-run
- ``add_args(parser)``: the model's own command-line arguments
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
import traceback
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.machine.files import not_a_regular_file


class ModelFileError(Exception):
    """model.py is missing, broken or lacks what a command needs (one-line message)."""


@dataclass
class ModelFile:
    """A loaded model.py."""

    path: Path
    module: types.ModuleType

    @property
    def name(self) -> str:
        """The model's name: its folder's name (``examples/mlp/model.py`` -> ``mlp``)."""
        return self.path.parent.name if self.path.stem == "model" else self.path.stem

    def source_hash(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def has(self, function: str) -> bool:
        return callable(getattr(self.module, function, None))

    def function(self, function: str) -> Callable[..., Any]:
        fn = getattr(self.module, function, None)
        if not callable(fn):
            raise ModelFileError(f"{self.path}: defines no function '{function}' (see the README)")
        return fn

    def add_args(self, parser: argparse.ArgumentParser) -> None:
        if self.has("add_args"):
            self.call("add_args", parser)

    def call(self, function: str, *args: Any) -> Any:
        """Call a model.py function; an exception in it becomes one line naming its file:line."""
        fn = self.function(function)
        try:
            return fn(*args)
        except ModelFileError:
            raise
        except Exception as error:
            raise ModelFileError(
                f"{self._where(error)}: {function}() raised {_describe(error)}"
            ) from error

    def tensors(self, function: str, *args: Any) -> tuple[Any, ...]:
        """Call ``function`` (``example_inputs``, ``example_targets``), which must return a tuple
        (or list) of torch tensors; anything else is one line naming the function and what it
        gave."""
        import torch

        value = self.call(function, *args)
        if isinstance(value, torch.Tensor):
            raise ModelFileError(
                f"{self.path}: {function}() returned a bare tensor; return a tuple of tensors, "
                "e.g. (x,)"
            )
        if not isinstance(value, tuple | list):
            raise ModelFileError(
                f"{self.path}: {function}() returned a {type(value).__name__}, "
                "not a tuple of tensors"
            )
        for i, item in enumerate(value):
            if not isinstance(item, torch.Tensor):
                raise ModelFileError(
                    f"{self.path}: {function}() item {i} is a {type(item).__name__}, "
                    "not a torch tensor"
                )
        return tuple(value)

    def batch_tensors(self, function: str, *args: Any) -> tuple[Any, ...]:
        """``tensors(function)``, each with at least one row: a 0-row example batch compiles
        to a program that computes nothing (a mean over no rows is NaN)."""
        tensors = self.tensors(function, *args)
        for i, tensor in enumerate(tensors):
            if tensor.dim() >= 1 and tensor.shape[0] == 0:
                raise ModelFileError(
                    f"{self.path}: {function}() item {i} has 0 rows (shape "
                    f"{list(tensor.shape)}); a batch needs at least one"
                )
        return tensors

    def spec(self, module: Any, args: argparse.Namespace, *, inference: bool) -> Any:
        """What the compiler compiles (a ``compiler.frontend.ModelSpec``): ``module`` (built by
        ``model(args)``) with one batch of example inputs and, for training, example targets,
        the loss and the optimizer (``optimizer(params, args)``; SGD at lr 0.01 if the file has
        none)."""

        from compiler.frontend import ModelSpec  # here: rdu-run loads model files without it

        inputs = self.batch_tensors("example_inputs", args)
        if inference:
            return ModelSpec(self.name, module, inputs, (), None, None, self.path)
        targets = self.batch_tensors("example_targets", args)
        loss_fn = self.function("loss")
        optimizer = self.optimizer(module.parameters(), args)
        return ModelSpec(self.name, module, inputs, targets, loss_fn, optimizer, self.path)

    def optimizer(self, params: Any, args: argparse.Namespace) -> Any:
        """The model's ``optimizer(params, args)``, which must be a ``torch.optim.Optimizer``;
        SGD at lr 0.01 when the file defines none."""
        import torch

        if not self.has("optimizer"):
            return torch.optim.SGD(params, lr=0.01)
        optimizer = self.call("optimizer", params, args)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ModelFileError(
                f"{self.path}: optimizer() returned {_a(optimizer)}, not a "
                "torch.optim.Optimizer (e.g. torch.optim.SGD(params, lr=0.01))"
            )
        return optimizer

    def batches(self, split: str, args: argparse.Namespace) -> Iterator[tuple[tuple, tuple]]:
        """The model's ``data(split, args)`` batches as ``(inputs, targets)`` tuples, drawn
        lazily (``data()`` may never end); an exception raised while drawing one is a
        ModelFileError naming the model file's line, like one raised by the call itself."""
        batches = self.call("data", split, args)
        try:
            iterator = iter(batches)
        except TypeError:
            raise ModelFileError(
                f"{self.path}: data() returned a {type(batches).__name__}, not an iterator of "
                "batches"
            ) from None
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except ModelFileError:
                raise
            except Exception as error:
                raise ModelFileError(
                    f"{self._where(error)}: data('{split}') raised {_describe(error)}"
                ) from error
            if not (isinstance(batch, tuple) and len(batch) == 2):
                raise ModelFileError(
                    f"{self.path}: data() must yield ((inputs...), (targets...)) pairs"
                )
            inputs, targets = batch
            if not (isinstance(inputs, tuple | list) and isinstance(targets, tuple | list)):
                raise ModelFileError(
                    f"{self.path}: data() must yield ((inputs...), (targets...)) pairs of tuples, "
                    f"got ({type(inputs).__name__}, {type(targets).__name__})"
                )
            yield tuple(inputs), tuple(targets)

    def _where(self, error: BaseException) -> str:
        frames = [
            f for f in traceback.extract_tb(error.__traceback__) if f.filename == str(self.path)
        ]
        if frames:
            return f"{self.path}:{frames[-1].lineno}"
        return str(self.path)


def _a(value: Any) -> str:
    """``None``, or ``a <type>``: what a function returned, for a message."""
    return "None" if value is None else f"a {type(value).__name__}"


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def load_model_file(path: str | Path) -> ModelFile:
    """Import a model.py by path; every failure is a ModelFileError naming the file."""
    path = Path(path).resolve()
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    if path.suffix != ".py":
        raise ModelFileError(f"{path}: not a Python file (expected a model.py)")
    problem = not_a_regular_file(path)
    if problem:
        raise ModelFileError(f"{path}: {problem}")
    name = f"rdu_user_model_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelFileError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        raise ModelFileError(f"{path}:{error.lineno}: not valid Python: {error.msg}") from error
    except Exception as error:
        loaded = ModelFile(path, module)
        raise ModelFileError(
            f"{loaded._where(error)}: importing raised {_describe(error)}"
        ) from error
    loaded = ModelFile(path, module)
    loaded.function("model")
    return loaded
