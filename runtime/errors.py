"""The base of every error the runtime raises on bad input.

Each error's message is one line that says what is wrong and where (symbol, section, unit, field
or file offset), so that the command-line tools can print it as is, without a traceback.
"""

from __future__ import annotations


class RduError(Exception):
    """Bad input to the runtime (a PEF, host tensors, a checkpoint): one line, what and where."""
