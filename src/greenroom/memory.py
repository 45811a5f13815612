"""Give memory back to the operating system after a large piece of work.

A first ingestion allocates and frees hundreds of megabytes of small objects, in the writer's
thread and in the walk's thread; glibc keeps what was freed in its per-thread arenas, so the
process stays as large as its peak although Python holds a few megabytes. ``malloc_trim``
returns the free pages. It is glibc's; elsewhere (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import cache
from typing import Any


@cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def release_memory() -> None:
    """Collect garbage and return free heap pages to the operating system."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
