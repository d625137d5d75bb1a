"""Coverage-guided fuzzing of the PEF reader and of rdu-opt's parser front, for long runs.

    .venv/bin/python test/hardening/fuzz_atheris.py pef [PEF] [atheris/libFuzzer options]
    .venv/bin/python test/hardening/fuzz_atheris.py ir [atheris/libFuzzer options]
    e.g. ... pef out/mlp/mlp.pef -max_total_time=3600 -timeout=10

The same properties as ``test_fuzz.py`` (which pytest runs with a bounded number of cases):
the input is refused with our own error type (``PefError``, ``IrError``) or accepted, and
anything else is a crash libFuzzer reports with the input that caused it. The fuzzer's bytes
pick a seed (the given PEF, or every chunk of the lit tests for IR) and a list of edits, so that
it starts from valid input instead of searching for the magic and the checksums.

Not collected by pytest (the name does not start with ``test_``). atheris is imported here only,
when the fuzzer starts, so the test suite does not need it to import.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fuzzing import (  # noqa: E402
    IR_TOKENS,
    check_ir,
    check_pef,
    ir_seeds,
    mutate,
    reframe,
    split_sections,
)


def _edits(provider: object, limit: int) -> list[tuple[int, int, bytes]]:
    """Edits drawn from an ``atheris.FuzzedDataProvider``."""
    out = []
    for _ in range(provider.ConsumeIntInRange(1, 4)):  # type: ignore[attr-defined]
        kind = provider.ConsumeIntInRange(0, 3)  # type: ignore[attr-defined]
        position = provider.ConsumeIntInRange(0, limit)  # type: ignore[attr-defined]
        if provider.ConsumeBool():  # type: ignore[attr-defined]
            token = IR_TOKENS[provider.ConsumeIntInRange(0, len(IR_TOKENS) - 1)]  # type: ignore[attr-defined]  # noqa: E501
            payload = token.encode()
        else:
            payload = provider.ConsumeBytes(provider.ConsumeIntInRange(1, 8))  # type: ignore[attr-defined]  # noqa: E501
        out.append((kind, position, payload or b"\0"))
    return out


def pef_target(seed: bytes) -> Callable[[bytes], None]:
    """The fuzz target for the PEF reader, around a valid ``seed`` PEF."""
    import atheris

    sections = split_sections(seed)

    def one_input(data: bytes) -> None:
        provider = atheris.FuzzedDataProvider(data)
        mode = provider.ConsumeIntInRange(0, 2)
        if mode == 0:  # raw bytes
            check_pef(provider.ConsumeBytes(len(data)))
        elif mode == 1:  # a valid PEF, edited (checksums not refreshed: must be refused)
            check_pef(mutate(seed, _edits(provider, len(seed))), original=seed)
        else:  # one payload edited, checksums made right again
            index = provider.ConsumeIntInRange(0, len(sections) - 1)
            payload = mutate(sections[index][1], _edits(provider, len(sections[index][1])))
            check_pef(reframe(seed, index, payload))

    return one_input


def ir_target() -> Callable[[bytes], None]:
    """The fuzz target for rdu-opt's parser front, around the lit tests' IR."""
    import atheris

    seeds = [s.encode() for s in ir_seeds()]

    def one_input(data: bytes) -> None:
        provider = atheris.FuzzedDataProvider(data)
        if provider.ConsumeBool():
            check_ir(provider.ConsumeBytes(len(data)))
        else:
            seed = seeds[provider.ConsumeIntInRange(0, len(seeds) - 1)]
            check_ir(mutate(seed, _edits(provider, len(seed))))

    return one_input


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in ("pef", "ir"):
        sys.exit(__doc__)
    try:
        import atheris
    except ImportError:
        sys.exit("fuzz_atheris: atheris is not installed (pip install atheris==3.0.0)")
    rest = argv[2:]
    if argv[1] == "pef":
        if not rest or rest[0].startswith("-"):
            sys.exit("fuzz_atheris: give a valid PEF to start from (rdu-compile one)")
        target = pef_target(Path(rest[0]).read_bytes())
        rest = rest[1:]
    else:
        target = ir_target()
    atheris.instrument_all()
    atheris.Setup([argv[0], *rest], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
