"""An ordered host call from inside a jitted program, NumPy in and NumPy out.

The fused online loop (:func:`smac_jax.training.steps.make_online_loop`) steps the environments
from inside the program, once per environment step. ``jax.experimental.io_callback`` wraps
every call in ``jax.device_put`` of its arguments onto the CPU device (a JAX array is built for
every operand, inside the running program) and converts the results back, a measurable share of
a small SAC step on CPU (timed side by side by ``experiments/benchmark.py``, the
``fused_io_callback`` variant; numbers in ``docs/README.md``, "Online loop").

:func:`host_call` has ``io_callback(..., ordered=True)``'s semantics (the calls happen in
program order, exactly once each) but hands the callback the operands as the NumPy arrays the
runtime already holds, with nothing in between. It is built on JAX's internal callback
lowering (``jax._src.callback.emit_python_callback``); where a JAX version lacks it,
:func:`host_call` falls back to ``io_callback`` (same results, the slower path):
:data:`LEAN` is False where the internals do not import, and :func:`lean_path_works` checks once
that they compile and run (``tests/test_online_loop.py`` checks that the installed JAX takes the
lean path).

Unlike ``io_callback``, the operands the callback receives may be views of the program's
buffers: copy what must outlive the call. ``host_call`` cannot be ``vmap``ped or
differentiated (neither can an ordered ``io_callback``).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import warnings

import jax
import numpy as np

__all__ = ["LEAN", "host_call", "lean_path_works"]

try:  # JAX internals; the public io_callback below is the fallback.
    from jax._src import callback as _jcb
    from jax._src import core as _jcore
    from jax._src.interpreters import mlir as _mlir

    _ORDERED = _jcb._OrderedIOEffect
    _emit = _jcb.emit_python_callback

    _host_call_p = _jcore.Primitive("smac_host_call")
    _host_call_p.multiple_results = True

    def _abstract_eval(*avals, fn, result_avals):
        del avals, fn
        return result_avals, {_ORDERED}

    _host_call_p.def_effectful_abstract_eval(_abstract_eval)

    def _impl(*args, fn, result_avals):
        del result_avals
        return [jax.numpy.asarray(r) for r in fn(*(np.asarray(a) for a in args))]

    _host_call_p.def_impl(_impl)

    def _lowering(ctx, *args, fn, result_avals):
        del result_avals
        token = ctx.tokens_in.get(_ORDERED)
        result, token, _ = _emit(ctx, lambda *xs: tuple(fn(*xs)), token, list(args), ctx.avals_in,
                                 ctx.avals_out, has_side_effect=True, returns_token=True)
        ctx.set_tokens_out(ctx.tokens_in.update_tokens(_mlir.TokenSet({_ORDERED: token})))
        return result

    _mlir.register_lowering(_host_call_p, _lowering, platform="cpu")
    LEAN = True
except (ImportError, AttributeError, TypeError):  # pragma: no cover - depends on the JAX version
    LEAN = False


_WORKS: list[bool] = []
_WARNED: list[bool] = []


def lean_path_works() -> bool:
    """Whether the lean path imports, compiles and returns the right values on this JAX (checked
    once per process with a tiny program; a JAX whose internals changed falls back to
    ``io_callback`` instead of failing inside the training loop)."""
    if not _WORKS:
        ok = False
        if LEAN:
            try:
                aval = _jcore.ShapedArray((2,), np.float32)
                f = jax.jit(lambda x: _host_call_p.bind(x, fn=lambda v: (np.asarray(v + 1.0, np.float32),),
                                                        result_avals=(aval,))[0])
                with jax.ensure_compile_time_eval():  # also when first asked while tracing a program
                    ok = bool(np.array_equal(np.asarray(f(jax.numpy.arange(2.0, dtype=np.float32))), [1.0, 2.0]))
            except Exception:  # noqa: BLE001 - any failure means: use the public path
                ok = False
        _WORKS.append(ok)
    return _WORKS[0]


def host_call(fn: Callable[..., Sequence[np.ndarray]], result_shapes: Sequence[jax.ShapeDtypeStruct],
              *args, lean: bool = False) -> tuple[jax.Array, ...]:
    """Call ``fn(*numpy_args) -> tuple of numpy arrays`` on the host, in program order.

    ``result_shapes``: a ``jax.ShapeDtypeStruct`` per result; ``fn`` must return arrays of exactly
    these shapes and dtypes (a mismatch raises inside the call). By default (and where the lean
    path is asked for but this JAX or backend cannot take it, with a warning) this is the public
    ``io_callback(fn, result_shapes, *args, ordered=True)``, with ``fn`` given NumPy arrays; the
    lean path is opt-in (``lean=True``, the pipeline's ``online.lean_host_call``).
    """
    result_shapes = tuple(result_shapes)
    if lean and not (lean_path_works() and jax.default_backend() == "cpu") and not _WARNED:
        _WARNED.append(True)
        warnings.warn("online.lean_host_call: the lean host call is not available on this JAX version or "
                      "backend; using jax.experimental.io_callback (same results, a little slower on CPU)")
    if lean and lean_path_works() and jax.default_backend() == "cpu":
        avals = tuple(_jcore.ShapedArray(s.shape, s.dtype) for s in result_shapes)
        return tuple(_host_call_p.bind(*args, fn=fn, result_avals=avals))
    from jax.experimental import io_callback

    return tuple(io_callback(lambda *xs: tuple(fn(*(np.asarray(x) for x in xs))), result_shapes, *args,
                             ordered=True))
