"""How much freed memory ssad's processes keep for reuse: big arrays come back from the heap, not as fresh pages.

glibc hands out arrays of more than about 128 KB as fresh memory-mapped pages and returns freed heap memory
to the system early, so each clip's waveform and STFT buffers are paid for again in page faults. On the
VMs measured, touching fresh memory cost 0.22 ms per MB against 0.06 ms for reused memory, and the
log-mel path of `make bench` ran at 380-480 clips/s with the settings below against 300-410 without
(experiments/results/bench.md). `tune_allocator` keeps arrays up to 32 MB on the heap and up to 256 MB of
freed heap for reuse. `SSAD_MALLOC=default` (or glibc's own MALLOC_*_ / GLIBC_TUNABLES settings) leaves
the allocator alone; other C libraries are left alone too.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["ALLOCATOR_ENV", "tune_allocator"]

#: set to "default" to leave the C allocator's settings alone
ALLOCATOR_ENV = "SSAD_MALLOC"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, <malloc.h>
_MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's ceiling for this setting on 64-bit
_TRIM_THRESHOLD_BYTES = 256 << 20
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def tune_allocator() -> bool:
    """Ask glibc to keep big arrays on the heap and freed memory for reuse; True when the settings took."""
    if os.environ.get(ALLOCATOR_ENV, "").strip().lower() == "default" or any(os.environ.get(n) for n in _USER_SETTINGS):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES))
