"""SAMG's adaptive update of the coefficient model (docs/samg.md, "Adaptive update").

Every ``adaptive_every`` environment steps (10k), on the period's online transitions:

1. keep those the current model calls out-of-distribution, p(s, a) = 0;
2. rank them by their Bellman error |min_i Q_i(s, a) - y|, y the learner's own (unguided) TD target
   under the target network saved at the period's start (the learner computes it);
3. train the C-VAE further on the ``adaptive_frac`` (10%) with the smallest error ("mastered" OOD
   samples): ``adaptive_steps`` Adam steps from a fresh optimiser state, KL weight ``beta_kl``;
4. refit the latent normals on the offline reference rows kept at preparation plus the selected
   samples.

Everything here is pure, written for one seed, and jittable / vmappable; the learner's
``periodic_host_update`` runs it for all seeds between two chunks of the online loop.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from smac_jax.data import replay
from smac_jax.samg import confidence, cvae
from smac_jax.types import Transitions


def period_rows(buffer: replay.ReplayBuffer, n: int) -> tuple[Transitions, jax.Array]:
    """The ``n`` rows inserted last (newest first) and a mask of those that exist (``n`` static,
    at most the capacity; fewer valid rows while the buffer holds fewer than ``n``)."""
    k = jnp.arange(n)
    idx = (buffer.ptr - 1 - k) % buffer.capacity
    rows = replay.unpack(buffer.rows[idx], buffer.obs_dim, buffer.act_dim)
    return rows, k < buffer.size


def select_mastered(p: jax.Array, error: jax.Array, valid: jax.Array, frac: float):
    """Among the valid rows with p == 0, the ``ceil(frac * count)`` with the smallest ``error``.

    Returns ``(order, k, n_ood)``: ``order`` sorts the selected rows first (smallest error first),
    ``k`` how many are selected (0 when no row is OOD), ``n_ood`` the OOD count."""
    ood = valid & (p <= 0.0)
    n_ood = ood.sum()
    k = jnp.ceil(frac * n_ood).astype(jnp.int32)
    order = jnp.argsort(jnp.where(ood, error, jnp.inf))
    return order, k, n_ood


def adaptive_update(cvae_params, stats: dict, batch: Transitions, valid: jax.Array, p: jax.Array,
                    error: jax.Array, reference_obs: jax.Array, reference_action: jax.Array, key, config):
    """One adaptive update (module docstring) for one seed.

    ``batch``: the period's rows, ``valid`` which of them exist, ``p`` their current coefficient,
    ``error`` their Bellman error; ``reference_*``: offline rows the normals are refitted on (may
    have 0 rows); ``config``: the SAMG learner config (``adaptive_frac``, ``adaptive_steps``,
    ``cvae``). Returns ``(cvae_params, stats, info)``; nothing changes when no row is selected."""
    cfg = config.cvae
    order, k, n_ood = select_mastered(p, error, valid, config.adaptive_frac)
    data = (batch.obs[order], batch.action[order], batch.next_obs[order])
    opt_state = cvae.optimizer(cfg).init(cvae_params)
    trained, _, m = cvae.sgd_steps(cvae_params, opt_state, data, k, key, int(config.adaptive_steps), 0, 0.0, cfg)

    selected = jnp.arange(order.shape[0]) < k
    z_m, z_v = cvae.encode_all(trained, data[0], data[1], cfg)
    weights = selected.astype(jnp.float32)
    if reference_obs.shape[0]:
        r_m, r_v = cvae.encode_all(trained, reference_obs, reference_action, cfg)
        z_m, z_v = jnp.concatenate([r_m, z_m]), jnp.concatenate([r_v, z_v])
        weights = jnp.concatenate([jnp.ones(reference_obs.shape[0], jnp.float32), weights])
    refit = confidence.fit_normals(z_m, z_v, weights)

    do = k > 0
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(do, a, b), new, old)
    sel_err = jnp.where(selected, error[order], 0.0)
    info = {
        "n_valid": valid.sum(), "n_ood": n_ood, "n_selected": k,
        "selected_error_mean": sel_err.sum() / jnp.maximum(k, 1),
        "ood_error_mean": jnp.where(valid & (p <= 0.0), error, 0.0).sum() / jnp.maximum(n_ood, 1),
        "cvae_loss": jnp.where(do, m["cvae_loss"], jnp.nan),
    }
    return keep(trained, cvae_params), keep(refit, stats), info
