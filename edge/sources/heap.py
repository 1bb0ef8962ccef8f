"""Give the heap's free pages back to the kernel after a pipeline is torn down.

A GStreamer pipeline's set-up and teardown allocate and free megabytes of small blocks (caps,
structures, element state, decoder buffers). glibc keeps freed blocks inside its heap, and the
next pipeline's blocks land among them, so over thousands of rebuilds the heap's footprint creeps
up in steps while the memory in use does not (``docs/reliability.md``, "A day on the road").
``malloc_trim(0)`` returns every whole free page inside the heap to the kernel (``MADV_DONTNEED``),
so RSS follows what is in use. It costs 0.36 ms on average and 2.1 ms at most over 601 teardowns
of a recorded drive (``bench/source_rebuilds.py`` on the project's 2-core VM), and a source is torn
down only after a fault or at the end of a recording, never per frame.

On a C library without ``malloc_trim`` (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None)  # the C library this process already runs on
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        log.debug("this C library has no malloc_trim: freed heap pages stay with the process")
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


def release_free_heap() -> bool:
    """``malloc_trim(0)`` where the C library has it; True when it gave memory back."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
