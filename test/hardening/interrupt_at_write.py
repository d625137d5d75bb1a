"""Run an rdu-* command and interrupt it at the worst moment: while it writes a file.

    python interrupt_at_write.py kill|ctrl-c|ctrl-c-again SUFFIX[@N] rdu-compile|rdu-run ARGS...

When the command is about to move the N-th (default first) finished temporary file into place
over a destination ending in SUFFIX (``os.replace``, the last step of an atomic write), ``kill``
sends itself SIGKILL (``kill -9``: nothing runs after it) and ``ctrl-c`` raises
KeyboardInterrupt there (what Ctrl-C does). The faults tests then check that the destination
still holds the previous complete file. Not collected by pytest.
"""

from __future__ import annotations

import os
import signal
import sys


def main(argv: list[str]) -> None:
    mode, target, tool, *args = argv[1:]
    suffix, _, nth = target.partition("@")
    remaining = [int(nth or 1)]
    replace = os.replace

    def interrupted_replace(src: str, dst: str) -> None:
        if str(dst).endswith(suffix):
            remaining[0] -= 1
            if remaining[0] == 0:
                if mode == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                if mode == "ctrl-c-again":
                    for signum in (signal.SIGINT, signal.SIGINT, signal.SIGTERM):
                        os.kill(os.getpid(), signum)
                else:
                    raise KeyboardInterrupt
        replace(src, dst)

    os.replace = interrupted_replace  # type: ignore[assignment]
    sys.argv = [tool, *args]
    if tool == "rdu-compile":
        from tools.rdu_compile import main as tool_main
    else:
        from tools.rdu_run import main as tool_main
    tool_main()


if __name__ == "__main__":
    main(sys.argv)
