"""The four dialects of the stack, lowest dependency first: dataflow, rdu_tile, pmu, pcu."""

from collections.abc import Callable

from xdsl.ir import Dialect


def all_dialects() -> dict[str, Callable[[], Dialect]]:
    """Our dialects by name, imported lazily (the registry rdu-opt and the driver share)."""

    def dataflow() -> Dialect:
        from dialects.dataflow import Dataflow

        return Dataflow

    def rdu_tile() -> Dialect:
        from dialects.rdu_tile import RduTile

        return RduTile

    def pmu() -> Dialect:
        from dialects.pmu import Pmu

        return Pmu

    def pcu() -> Dialect:
        from dialects.pcu import Pcu

        return Pcu

    return {"dataflow": dataflow, "rdu_tile": rdu_tile, "pmu": pmu, "pcu": pcu}
