"""Process-level settings: fast CPU execution of XLA programs, and compiled programs kept on disk.

:func:`enable_compilation_cache` points JAX's persistent compilation cache at a directory, so a
program compiled by one launch (a run, its resume after a kill, the next seed or task with the same
shapes) is read back by the next instead of compiled again. The launch scripts turn it on (through
:func:`smac_jax.cli.run_cli`); ``SMAC_JAX_XLA_CACHE=0`` turns it off, ``SMAC_JAX_XLA_CACHE=DIR``
moves it, and a cache directory configured for JAX itself (``JAX_COMPILATION_CACHE_DIR``) is left
as it is.

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

:func:`progress_bar` is the library's progress bar (tqdm): on a terminal or in a notebook it
refreshes as usual; written to a file (``nohup``, a cluster job's log) it refreshes every
``SMAC_JAX_PROGRESS_EVERY`` seconds (default 60), so a long run's log holds a line a minute
instead of ten a second.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
import sys

#: Where compiled programs are kept unless ``SMAC_JAX_XLA_CACHE`` says otherwise.
DEFAULT_XLA_CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                                 "smac_jax", "xla")
#: The cache's size limit in bytes (JAX evicts the least recently used programs beyond it).
XLA_CACHE_MAX_BYTES = 2 << 30
#: A file in a cache directory that was empty when the library first used it: its programs were all
#: written with eviction on. JAX's eviction fails on entries written without it (every later write
#: then warns), so a directory without this mark that already holds programs is left unbounded.
BOUNDED_MARK = "SMAC_JAX_BOUNDED.txt"  # (not ending in "-cache": JAX reads those as programs)

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


def enable_compilation_cache(directory: str | None = None) -> str | None:
    """Keep compiled XLA programs in ``directory`` (default: ``SMAC_JAX_XLA_CACHE``, else
    :data:`DEFAULT_XLA_CACHE`) with JAX's persistent compilation cache, for the rest of the
    process. Programs that took at least a second to compile are stored (JAX's threshold), up to
    :data:`XLA_CACHE_MAX_BYTES`, the least recently used evicted first (JAX's eviction needs the
    ``filelock`` package, a dependency), in a directory the library started empty (it marks it,
    :data:`BOUNDED_MARK`); a directory that already held programs without the mark (written by
    another program, or an older version of this library) is used unbounded. Results
    are the same with or without the cache (it holds the very executable the compiler produced for
    the same program and options). Programs that call back into Python (the online loop) are
    never stored: JAX cannot.

    Returns the directory in use, or None: turned off (``SMAC_JAX_XLA_CACHE=0``). A directory
    already configured for JAX (``JAX_COMPILATION_CACHE_DIR`` or ``jax_compilation_cache_dir``)
    is kept and returned."""
    import jax

    configured = jax.config.jax_compilation_cache_dir or os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if configured:
        return configured
    choice = directory or os.environ.get("SMAC_JAX_XLA_CACHE") or DEFAULT_XLA_CACHE
    if choice == "0":
        return None
    mark = os.path.join(choice, BOUNDED_MARK)
    try:
        os.makedirs(choice, exist_ok=True)
        if not os.listdir(choice):
            with open(mark, "w") as f:
                f.write("JAX compilation cache written with eviction on (smac_jax.runtime.enable_compilation_cache)\n")
    except OSError:  # an unwritable home: run without the cache rather than fail
        return None
    jax.config.update("jax_compilation_cache_dir", choice)
    if (os.path.exists(mark) and jax.config.jax_compilation_cache_max_size == -1
            and importlib.util.find_spec("filelock") is not None):
        jax.config.update("jax_compilation_cache_max_size", XLA_CACHE_MAX_BYTES)  # JAX's eviction needs filelock
    return choice


#: Seconds between two refreshes of a progress bar written to a file, unless set in the environment.
PROGRESS_EVERY_S = 60.0


def progress_bar(**kwargs):
    """A ``tqdm.auto.tqdm(**kwargs)`` bar; where stderr is not a terminal and no notebook runs,
    refreshed at most every ``SMAC_JAX_PROGRESS_EVERY`` seconds (unless ``mininterval`` is given)."""
    from tqdm.auto import tqdm

    to_file = not (getattr(sys.stderr, "isatty", lambda: False)() or "ipykernel" in sys.modules)
    if to_file and "mininterval" not in kwargs:
        raw = os.environ.get("SMAC_JAX_PROGRESS_EVERY", "")
        try:
            every = float(raw) if raw else PROGRESS_EVERY_S
        except ValueError:
            raise ValueError(f"SMAC_JAX_PROGRESS_EVERY={raw!r} is not a number of seconds") from None
        kwargs.update(mininterval=every, maxinterval=max(every, 10.0))
    return tqdm(**kwargs)
