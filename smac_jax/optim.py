"""Optimisers shared by every learner: Adam, or Muon for hidden-layer weight matrices.

``make_optimizer(config, lr)`` reads ``config.optimizer`` ("adam" | "muon") and, for Muon,
``config.muon_consistent_rms`` and ``config.muon_scope``:

* ``muon_scope="hidden"`` (default): Muon updates only the hidden-to-hidden kernels, i.e. the
  ``dense_i`` layers with ``i >= 1`` of an MLP. The input layer (``dense_0``), every output layer
  and head (a critic's ``out``, an actor's ``mean`` and ``log_std``), biases, LayerNorm
  parameters and scalars use Adam. This is standard Muon practice: Muon is defined for hidden
  layers, and with Muon on every kernel even plain offline SAC fails (docs/algorithms.md).
* ``muon_scope="all_kernels"``: Muon on every ``kernel`` leaf (the literal reading of "every
  matrix-shaped weight").

2-D Dense kernels are ``(in, out)``; the 3-D ``(E, in, out)`` kernels of ``nn.vmap`` ensembles
are orthogonalised per ensemble member (``MuonDimensionNumbers(reduction_axis=1,
output_axis=2)``), and their 2-D ``(E, out)`` biases are sent to Adam explicitly (optax would
otherwise treat any 2-D leaf as a matrix).
"""
from __future__ import annotations

from typing import Any

import re

import jax
import optax
from optax.contrib import MuonDimensionNumbers

MUON_2D = MuonDimensionNumbers(reduction_axis=0, output_axis=1)
MUON_ENSEMBLE = MuonDimensionNumbers(reduction_axis=1, output_axis=2)
MUON_SCOPES = ("hidden", "all_kernels")
OPTIMIZERS = ("adam", "muon")
_HIDDEN_LAYER = re.compile(r"dense_(\d+)$")


def _leaf_name(path) -> str:
    if not path:  # a bare array (e.g. a scalar temperature) is its own tree
        return ""
    last = path[-1]
    return str(getattr(last, "key", getattr(last, "name", last)))


def _module_name(path) -> str:
    return _leaf_name(path[:-1]) if len(path) > 1 else ""


def is_hidden_kernel(path) -> bool:
    """A hidden-to-hidden kernel: the ``kernel`` of an MLP layer ``dense_i`` with ``i >= 1``."""
    m = _HIDDEN_LAYER.match(_module_name(path))
    return _leaf_name(path) == "kernel" and m is not None and int(m.group(1)) >= 1


def muon_dimension_numbers(params: Any, scope: str = "hidden") -> Any:
    """For every leaf: its MuonDimensionNumbers if Muon should update it, else None (Adam)."""
    if scope not in MUON_SCOPES:
        raise ValueError(f"muon_scope must be one of {MUON_SCOPES}, got {scope!r}")

    def spec(path, leaf):
        if _leaf_name(path) != "kernel":
            return None
        if scope == "hidden" and not is_hidden_kernel(path):
            return None
        if leaf.ndim == 2:
            return MUON_2D
        if leaf.ndim == 3:
            return MUON_ENSEMBLE
        return None

    return jax.tree_util.tree_map_with_path(spec, params)


def muon_partition(params: Any, scope: str = "hidden") -> Any:
    """'muon' or 'adam' for every leaf: what ``make_optimizer`` does with it (for tests and logs)."""
    specs = muon_dimension_numbers(params, scope)
    return jax.tree.map(
        lambda s: "adam" if s is None else "muon",
        specs,
        is_leaf=lambda x: x is None or isinstance(x, MuonDimensionNumbers),
    )


def make_optimizer(
    config: Any,
    lr: float | None = None,
    grad_clip: float | None = None,
) -> optax.GradientTransformation:
    """The optimiser ``config.optimizer`` names, with learning rate ``lr`` (default ``config.lr``)."""
    name = config.optimizer
    lr = config.lr if lr is None else lr
    if name == "adam":
        opt = optax.adam(lr)
    elif name == "muon":
        scope = config.muon_scope
        if scope not in MUON_SCOPES:
            raise ValueError(f"config.muon_scope must be one of {MUON_SCOPES}, got {scope!r}")
        opt = optax.contrib.muon(
            learning_rate=lr,
            muon_weight_dimension_numbers=lambda params: muon_dimension_numbers(params, scope),
            consistent_rms=config.muon_consistent_rms,
        )
    else:
        raise ValueError(f"config.optimizer must be 'adam' or 'muon', got {name!r}")
    if grad_clip is not None:
        opt = optax.chain(optax.clip_by_global_norm(grad_clip), opt)
    return opt
