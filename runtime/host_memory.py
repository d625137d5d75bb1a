"""The host allocator's setting for the emulator: freed memory is kept for the next allocation.

A training step allocates every unit's output afresh (a new parameter, new optimizer state, each
activation) and frees it once its last reader has run. glibc's ``malloc`` serves an allocation
above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and unmaps it when it is freed,
so each of these arrays costs a page fault per 4 KB page written, every step: for GPT-2 small's
AdamW (154 MB tensors) that was over half of the optimizer's time. ``keep_freed_memory`` turns
``mmap`` off for ``malloc`` and stops it trimming the heap top, so a freed array's pages are
reused by the next one (torch's CPU caching allocator does the same for its tensors). Peak
resident memory is unchanged (what is live at the peak is the same); the pages freed after it
stay mapped to the process.

Only glibc has these knobs (``mallopt``); elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc ``malloc`` reuse freed large blocks (once a process); whether it could."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    trim = mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    mmap = mallopt(_M_MMAP_MAX, 0)
    return bool(trim and mmap)
