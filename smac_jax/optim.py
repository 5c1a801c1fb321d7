"""Optimisers shared by every learner: Adam, or Muon for matrix-shaped weights (SPEC 3.3).

``make_optimizer(config)`` reads ``config.optimizer`` ("adam" | "muon"), ``config.lr`` and,
for Muon, ``config.muon_consistent_rms``. Muon receives every ``kernel`` leaf (2-D Dense
kernels and the 3-D ``(E, in, out)`` kernels of ``nn.vmap`` ensembles, orthogonalised per
ensemble member); everything that is not a kernel (biases, LayerNorm scales, temperatures,
Fourier features) goes to Adam.
"""
from __future__ import annotations

from typing import Any

import jax
import optax
from optax.contrib import MuonDimensionNumbers

MUON_2D = MuonDimensionNumbers(reduction_axis=0, output_axis=1)
MUON_ENSEMBLE = MuonDimensionNumbers(reduction_axis=1, output_axis=2)


def _leaf_name(path) -> str:
    if not path:  # a bare array (e.g. a scalar temperature) is its own tree
        return ""
    last = path[-1]
    return str(getattr(last, "key", getattr(last, "name", last)))


def muon_dimension_numbers(params: Any) -> Any:
    """For every leaf: its MuonDimensionNumbers if Muon should update it, else None (Adam)."""

    def spec(path, leaf):
        if _leaf_name(path) != "kernel":
            return None
        if leaf.ndim == 2:
            return MUON_2D
        if leaf.ndim == 3:
            return MUON_ENSEMBLE
        return None

    return jax.tree_util.tree_map_with_path(spec, params)


def muon_partition(params: Any) -> Any:
    """'muon' or 'adam' for every leaf: what ``make_optimizer`` does with it (for tests and logs)."""
    specs = muon_dimension_numbers(params)
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
    name = config.get("optimizer", "adam")
    lr = config.get("lr", 3e-4) if lr is None else lr
    if name == "adam":
        opt = optax.adam(lr)
    elif name == "muon":
        opt = optax.contrib.muon(
            learning_rate=lr,
            muon_weight_dimension_numbers=muon_dimension_numbers,
            consistent_rms=config.get("muon_consistent_rms", 0.2),
        )
    else:
        raise ValueError(f"config.optimizer must be 'adam' or 'muon', got {name!r}")
    if grad_clip is not None:
        opt = optax.chain(optax.clip_by_global_norm(grad_clip), opt)
    return opt
