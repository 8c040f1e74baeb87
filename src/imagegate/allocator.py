"""Keep large freed buffers in the process instead of handing them back to the kernel.

Every generation allocates a few buffers of 1.7 to 2.3 MB (the upstream's answer, its
parsed text, the decoded image, the rendered response). glibc's defaults serve such
blocks with ``mmap`` and return them with ``munmap``, or trim them off the top of the
heap, so the next image's buffers fault in fresh pages, about 2,000 page faults and
zeroed pages per image. Raising both thresholds keeps that memory for reuse: scenario B
at c=1 went from 18.2-19.7 to 11.6-13.2 ms of CPU per image, with no change in peak
memory (docs/performance-history.md). Operators who set glibc's own ``MALLOC_*_``
variables keep them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed on 64-bit
TRIM_THRESHOLD = 128 * 1024 * 1024
_OPERATOR_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_large_buffers() -> bool:
    """Raise glibc's mmap and trim thresholds; whether they were changed."""
    if not sys.platform.startswith("linux"):
        return False
    if any(name in os.environ for name in _OPERATOR_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
