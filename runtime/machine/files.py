"""Reading the user's files: a path given for a PEF, a checkpoint, a model or a target file must
name a regular file. A named pipe would block the read forever and a device such as
``/dev/zero`` never ends (the read would take all memory), so both are refused by name first."""

from __future__ import annotations

import os
import stat


def not_a_regular_file(path: str | os.PathLike[str]) -> str:
    """Why ``path`` cannot be read as a file (``is a directory``, ``is a named pipe``...), or ""
    when it is a regular file or does not exist (the reader then says so its own way)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return ""
    if stat.S_ISREG(mode):
        return ""
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if stat.S_ISFIFO(mode):
        return "is a named pipe, not a file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a file"
    return "is a device, not a file"
