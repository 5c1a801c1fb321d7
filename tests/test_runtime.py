"""The host-allocator setting: applied on glibc, skipped when opted out."""
import platform

import pytest

from smac_jax import runtime


def test_opt_out_leaves_allocator_alone(monkeypatch):
    monkeypatch.setattr(runtime, "_applied", False)
    monkeypatch.setenv("SMAC_JAX_TUNE_MALLOC", "0")
    assert runtime.tune_host_allocator() is False


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_applies_on_glibc(monkeypatch):
    monkeypatch.setattr(runtime, "_applied", False)
    monkeypatch.delenv("SMAC_JAX_TUNE_MALLOC", raising=False)
    assert runtime.tune_host_allocator() is True
    assert runtime.tune_host_allocator() is True  # idempotent
