"""The process ssad runs in: how many CPU threads its torch work uses, and how much freed memory it keeps.

Threads: configurable, and by default no more than this process may run on.
torch's own default is every core of the machine, with OpenMP threads that spin while they wait for
work. Two such processes on one machine starve each other: 80 training steps of the demo took 36 s
alone and 443 s with a second run beside them. ssad therefore (1) asks OpenMP to let waiting threads
sleep (`OMP_WAIT_POLICY=PASSIVE`, set in `ssad/__init__.py` before torch loads, unless the user set
it), and (2) uses as many threads as the cores in the process's affinity mask (what `taskset`,
`docker --cpuset-cpus` or a cgroup allow), or `$SSAD_THREADS` (else `$OMP_NUM_THREADS`) when set.

Memory: glibc hands out arrays of more than about 128 KB as fresh memory-mapped pages and returns freed heap
memory to the system early, so each clip's waveform and STFT buffers are paid for again in page faults. On
the VMs measured, touching fresh memory cost 0.22 ms per MB against 0.06 ms for reused memory, and the
log-mel path of `make bench` ran at 380-480 clips/s with the settings below against 300-410 without
(experiments/results/bench.md). `tune_allocator` keeps arrays up to 32 MB on the heap and up to 256 MB of
freed heap for reuse. `SSAD_MALLOC=default` (or glibc's own MALLOC_*_ / GLIBC_TUNABLES settings) leaves
the allocator alone; other C libraries are left alone too.

Both apply once per process (`configure_runtime`): the `ssad` command does it first thing, and the library the
first time it builds a model (`ssad.load`, `ssad.Detector`), so that Python code runs as fast as the command
(`Detector.fit` took 161 s from Python against 16 s from the command before it did: numpy's BLAS threads spun
beside torch's). A thread count the user chose is kept: `$SSAD_THREADS` or `$OMP_NUM_THREADS`, a lower
`torch.set_num_threads` made before, `$OPENBLAS_NUM_THREADS`; `configure_threads(n)` sets another at any time.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
from collections.abc import Iterator

from ssad.core.errors import SsadError

__all__ = [
    "ALLOCATOR_ENV", "THREADS_ENV", "WAIT_POLICY_ENV", "BLAS_THREADS", "available_cores", "default_threads",
    "current_threads", "configure_runtime", "configure_threads", "torch_threads", "tune_allocator",
]

#: environment variable that fixes ssad's thread count
THREADS_ENV = "SSAD_THREADS"
#: OpenMP's variable for what idle threads do; ssad's default is "PASSIVE" (sleep, don't spin)
WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
#: threads of numpy/scipy's OpenBLAS (torch's own BLAS follows the torch thread count)
BLAS_THREADS = 1
#: set to "default" to leave the C allocator's settings alone
ALLOCATOR_ENV = "SSAD_MALLOC"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, <malloc.h>
_MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's ceiling for this setting on 64-bit
_TRIM_THRESHOLD_BYTES = 256 << 20
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def available_cores() -> int:
    """Cores this process may run on (its affinity mask), which can be fewer than the machine has."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """`$SSAD_THREADS`, else `$OMP_NUM_THREADS`, when set (a positive integer), else `available_cores()`."""
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if not value:
            continue
        try:
            threads = int(value)
        except ValueError:
            threads = 0
        if threads < 1:
            raise SsadError(f"{name}={value!r}: must be a positive integer (threads for torch)")
        return threads
    return available_cores()


def current_threads() -> int:
    """The thread count in force: torch's when it is loaded, else `default_threads()`."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else default_threads()


def configure_threads(threads: int | None = None) -> int:
    """Make torch use `threads` CPU threads (default: `default_threads()`), numpy's BLAS one; return the count.

    Before torch is imported this only sets `OMP_NUM_THREADS` (so `ssad --help` stays fast and torch
    starts with the right pool); afterwards it calls `torch.set_num_threads`. numpy and scipy's
    OpenBLAS (the scorers' small matrix work) gets `BLAS_THREADS` unless `OPENBLAS_NUM_THREADS` is set:
    its threads spin while they wait, and beside another busy process a Ledoit-Wolf fit of 95k x 64
    took 13.7 s on two of them against 0.39 s on one (measured while developing issue 13).
    """
    count = default_threads() if threads is None else threads
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise SsadError(f"threads={threads!r}: must be a positive integer")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(count)
    else:
        os.environ["OMP_NUM_THREADS"] = str(count)
    if "OPENBLAS_NUM_THREADS" not in os.environ:
        os.environ["OPENBLAS_NUM_THREADS"] = str(BLAS_THREADS)  # for an OpenBLAS loaded from now on
        if "numpy" in sys.modules:
            from threadpoolctl import threadpool_limits

            threadpool_limits(BLAS_THREADS, user_api="blas")  # and the ones already loaded
    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(count)
    return count


_configured = False


def configure_runtime() -> None:
    """Once per process: `configure_threads` and `tune_allocator`, keeping a thread count the user chose.

    The count is `default_threads()` (which honours `$SSAD_THREADS` and `$OMP_NUM_THREADS`); when torch is
    already loaded and neither is set, torch's own count where it is lower (a `torch.set_num_threads` the user
    made). Later calls do nothing, so the library can call it from every entry point.
    """
    global _configured
    if _configured:
        return
    _configured = True
    torch = sys.modules.get("torch")
    chosen = any(os.environ.get(name, "").strip() for name in (THREADS_ENV, "OMP_NUM_THREADS"))
    threads = min(torch.get_num_threads(), default_threads()) if torch is not None and not chosen else None
    count = configure_threads(threads)
    tuned = tune_allocator()
    logging.getLogger("ssad").debug("runtime: %d torch thread(s), %s BLAS thread(s), allocator %s", count,
                                    os.environ.get("OPENBLAS_NUM_THREADS"), "tuned" if tuned else "left alone")


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the body with torch on `threads` intra-op threads, then restore the count it had."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
