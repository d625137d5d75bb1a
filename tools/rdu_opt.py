"""rdu-opt: run any pass pipeline over RDU IR, like mlir-opt / xdsl-opt.

rdu-opt f.mlir -p convert-dataflow-to-rdu-tile,convert-rdu-tile-to-pcu-pmu
"""

from xdsl.xdsl_opt_main import xDSLOptMain

from compiler.passes import all_passes
from dialects import all_dialects


class RduOptMain(xDSLOptMain):
    """xdsl-opt with our dialects and passes registered (on top of xdsl's own)."""

    def register_all_dialects(self) -> None:
        super().register_all_dialects()
        for name, factory in all_dialects().items():
            self.ctx.register_dialect(name, factory)

    def register_all_passes(self) -> None:
        super().register_all_passes()
        for name, factory in all_passes().items():
            self.register_pass(name, factory)


def main() -> None:
    RduOptMain(description="RDU modular optimizer driver").run()


if __name__ == "__main__":
    main()
