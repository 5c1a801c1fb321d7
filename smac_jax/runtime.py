"""Process-level settings for fast CPU execution of XLA programs.

:func:`tune_host_allocator` keeps XLA's large temporary buffers in the malloc heap. By default
glibc serves every allocation above a (dynamic, at most 32 MiB) threshold with a fresh ``mmap``
and hands it back on free, so a jitted program whose temporaries exceed it page-faults its whole
working set on every call (``python experiments/benchmark.py`` shows the effect on every learner;
measured numbers in ``docs/README.md``, "Offline update throughput"). Scan-fused programs
suffer less (the temporaries are allocated once per dispatch), per-environment-step dispatches
the most.

The setting is process-wide and cannot be undone, so no library function applies it: the launch
scripts in ``experiments/`` call it first thing; in a notebook, call it once yourself before
training. Set
``SMAC_JAX_TUNE_MALLOC=0`` to opt out. On a non-glibc platform it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_applied = False


def tune_host_allocator(mmap_threshold: int = 1 << 30, trim_threshold: int = (1 << 31) - 1) -> bool:
    """Serve allocations below ``mmap_threshold`` bytes from the heap and keep up to
    ``trim_threshold`` bytes of freed heap instead of returning them to the OS.
    Returns whether the setting is in effect (False on non-glibc systems or when opted out)."""
    global _applied
    if _applied:
        return True
    if os.environ.get("SMAC_JAX_TUNE_MALLOC", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))
    return _applied
