"""The refactor guard's compiles: every example's training and inference PEF as ``rdu-compile
examples/<name>/model.py [--inference]`` writes it at its defaults, and their recorded digests.

The PEF's bytes depend on the model, the compiler and the target only (not on the output path,
the PEF's name or the time; checked by recompiling elsewhere), so a refactor that keeps them
equal changed nothing a user runs. The one way the machine enters is torch's float32 arithmetic
in the digest of a non-persistent buffer torch computes (hf_llama's ``rotary_emb.inv_freq``):
a CPU whose torch rounds that differently would change hf_llama's PEFs.

After a deliberate change to the PEFs, re-record the digests (and say in the commit which PEFs
changed and why):

    PYTHONPATH=$PWD .venv/bin/python test/e2e/pef_guard.py
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import click
import torch

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = (
    "mlp", "lenet", "resnet", "gpt", "hf_gpt2", "hf_bert", "hf_llama", "torch_transformer",
    "matmul",
)  # fmt: skip
DIGESTS = Path(__file__).with_name("pef_digests.txt")
"""One line a PEF: ``<sha256>  <example>`` (training) or ``<sha256>  <example>-inference``."""


def pef_name(example: str, inference: bool) -> str:
    return f"{example}-inference" if inference else example


def option_default(command: click.Command, name: str) -> Any:
    """The default of ``command``'s option ``name``."""
    return next(param.default for param in command.params if param.name == name)


def compile_example(example: str, inference: bool) -> bytes:
    """The PEF rdu-compile writes for ``examples/<example>/model.py`` at its defaults, compiled in
    this process (the torch random state is left as it was)."""
    from compiler.driver import compile_in_memory
    from compiler.targets import get_target
    from runtime.pef import encode_pef
    from tools.rdu_compile import compile_flags, model_spec, rdu_compile

    arch: str = option_default(rdu_compile, "arch")
    batch_size: int = option_default(rdu_compile, "batch_size")
    seed: int = option_default(rdu_compile, "seed")
    with torch.random.fork_rng():
        model_file, spec = model_spec(
            str(ROOT / "examples" / example / "model.py"),
            [],
            inference,
            batch_size,
            seed,
            False,
            get_target(arch),
        )
        program = compile_in_memory(
            spec,
            inference=inference,
            target=get_target(arch),
            flags=compile_flags(arch, batch_size, inference, False, 1, []),
            source_hash=model_file.source_hash(),
            batch_size=batch_size,
        )
    return encode_pef(program)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def recorded_digests() -> dict[str, str]:
    """PEF name -> its recorded sha256."""
    lines = DIGESTS.read_text().splitlines()
    return {name: sha for sha, name in (line.split() for line in lines if line.strip())}


def main() -> None:
    """Compile every example's PEFs and write their digests to ``pef_digests.txt``."""
    from runtime.machine.atomic import atomic_write_bytes

    lines = []
    for example in EXAMPLES:
        for inference in (False, True):
            name = pef_name(example, inference)
            lines.append(f"{digest(compile_example(example, inference))}  {name}")
            print(lines[-1], file=sys.stderr)
    atomic_write_bytes(DIGESTS, ("\n".join(lines) + "\n").encode())


if __name__ == "__main__":
    main()
