"""The host-allocator setting: a large allocation lands in the heap when it is applied (read back
from /proc/self/maps in a fresh process), a fresh mapping when not; the opt-out is honoured. The
on-disk compilation cache: its directory, its opt-out, and a directory configured for JAX kept."""
import os
import platform
import subprocess
import sys

import pytest

from smac_jax import runtime

# In a fresh interpreter: optionally apply the setting, allocate 64 MiB with malloc, and print how
# much the [heap] segment grew (bytes). glibc's default puts such a block in its own mmap.
_PROBE = """
import ctypes, sys
def heap():
    for line in open("/proc/self/maps"):
        if line.rstrip().endswith("[heap]"):
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            return hi - lo
    return 0
if sys.argv[1] == "1":
    from smac_jax.runtime import tune_host_allocator
    assert tune_host_allocator()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
before = heap()
p = libc.malloc(64 << 20)
print(heap() - before)
"""

glibc_only = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="mallopt and /proc/self/maps are Linux/glibc's")


def _heap_growth(tuned: bool) -> int:
    out = subprocess.run([sys.executable, "-c", _PROBE, "1" if tuned else "0"], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.strip())


@glibc_only
def test_large_allocations_stay_in_heap_only_when_tuned():
    assert _heap_growth(tuned=True) >= 64 << 20
    assert _heap_growth(tuned=False) < 64 << 20


def test_opt_out_leaves_allocator_alone(monkeypatch):
    monkeypatch.setattr(runtime, "_applied", False)
    monkeypatch.setenv("SMAC_JAX_TUNE_MALLOC", "0")
    assert runtime.tune_host_allocator() is False


def test_compilation_cache_directory_opt_out_and_configured_directory(monkeypatch, tmp_path):
    import jax

    original = jax.config.jax_compilation_cache_dir  # the tests' own cache (tests/conftest.py), or None
    if original:
        monkeypatch.setenv("SMAC_JAX_XLA_CACHE", str(tmp_path / "unused"))
        assert runtime.enable_compilation_cache() == original  # configured for JAX: kept
        assert not os.path.exists(tmp_path / "unused")
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    try:
        jax.config.update("jax_compilation_cache_dir", None)
        monkeypatch.setenv("SMAC_JAX_XLA_CACHE", "0")
        assert runtime.enable_compilation_cache() is None and jax.config.jax_compilation_cache_dir is None
        monkeypatch.setenv("SMAC_JAX_XLA_CACHE", str(tmp_path / "xla"))
        assert runtime.enable_compilation_cache() == str(tmp_path / "xla")
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "xla") and os.path.isdir(tmp_path / "xla")
        assert jax.config.jax_compilation_cache_max_size == runtime.XLA_CACHE_MAX_BYTES  # started empty: bounded
        assert os.path.exists(tmp_path / "xla" / runtime.BOUNDED_MARK)
        jax.config.update("jax_compilation_cache_max_size", -1)
        jax.config.update("jax_compilation_cache_dir", None)
        assert runtime.enable_compilation_cache() == str(tmp_path / "xla")  # its own marked directory: bounded again
        assert jax.config.jax_compilation_cache_max_size == runtime.XLA_CACHE_MAX_BYTES
        jax.config.update("jax_compilation_cache_max_size", -1)
        jax.config.update("jax_compilation_cache_dir", None)
        # a directory that holds programs written without eviction (no mark) stays unbounded
        os.makedirs(tmp_path / "old")
        (tmp_path / "old" / "jit_f-0123-cache").write_bytes(b"x")
        assert runtime.enable_compilation_cache(str(tmp_path / "old")) == str(tmp_path / "old")
        assert jax.config.jax_compilation_cache_max_size == -1 and not os.path.exists(tmp_path / "old" / runtime.BOUNDED_MARK)
        jax.config.update("jax_compilation_cache_dir", None)
        monkeypatch.delenv("SMAC_JAX_XLA_CACHE")
        assert runtime.DEFAULT_XLA_CACHE.endswith(os.path.join("smac_jax", "xla"))
        assert runtime.enable_compilation_cache(str(tmp_path / "given")) == str(tmp_path / "given")
    finally:
        jax.config.update("jax_compilation_cache_dir", original)
        jax.config.update("jax_compilation_cache_max_size", -1)


class _Stream:
    def __init__(self, tty: bool):
        self.tty, self.text = tty, []

    def isatty(self):
        return self.tty

    def write(self, s):
        self.text.append(s)

    def flush(self):
        pass


def test_progress_bars_written_to_a_file_refresh_once_a_minute(monkeypatch):
    """A long run's log (nohup, a cluster job) gets a bar refresh every 60 s (SMAC_JAX_PROGRESS_EVERY),
    not tqdm's ten a second; a terminal keeps tqdm's own rate."""
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.delenv("SMAC_JAX_PROGRESS_EVERY", raising=False)
    log = _Stream(tty=False)
    monkeypatch.setattr(sys, "stderr", log)
    with runtime.progress_bar(total=10, file=log) as bar:
        assert bar.mininterval == runtime.PROGRESS_EVERY_S == 60.0
        for _ in range(10):
            bar.update(1)
    assert sum(s.count("\r") for s in log.text) <= 3  # opened and closed, no refresh in between
    monkeypatch.setenv("SMAC_JAX_PROGRESS_EVERY", "5")
    assert runtime.progress_bar(total=1, file=log).mininterval == 5.0
    monkeypatch.setenv("SMAC_JAX_PROGRESS_EVERY", "soon")
    with pytest.raises(ValueError, match="SMAC_JAX_PROGRESS_EVERY='soon' is not a number of seconds"):
        runtime.progress_bar(total=1, file=log)
    terminal = _Stream(tty=True)
    monkeypatch.setattr(sys, "stderr", terminal)
    assert runtime.progress_bar(total=1, file=terminal).mininterval == 0.1  # tqdm's default
