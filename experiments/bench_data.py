"""What the benchmark scripts share: synthetic hopper-sized offline data, the settings that
match JAX-CORL's networks (``benchmark.py``'s peer comparison, ``profile_update.py``,
``ensemble_layout.py``) and one offline dispatch as a no-argument call."""
from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp

from smac_jax.cli import fail
from smac_jax.learners import make_learner
from smac_jax.score import model as sm
from smac_jax.training.steps import make_offline_step, unalias
from smac_jax.types import Transitions

#: This library's settings that match JAX-CORL's default networks per algorithm (both use
#: 256x256 MLPs, batch 256, two critics). Not matched, because this library has one width list for
#: every network: JAX-CORL's AWAC actor is 4x256 (ours 2x256: less work here), its IQL value
#: network has LayerNorm and its IQL critics do not (ours: neither).
PEER_MATCHED = {
    "td3bc": {"hidden_dims": (256, 256), "critic_layer_norm": True},
    "cql": {"hidden_dims": (256, 256), "cql_n_actions": 10},
    "iql": {"hidden_dims": (256, 256)},
    "awac": {"hidden_dims": (256, 256), "critic_layer_norm": True},
}

OBS, ACT, BATCH = 11, 3, 256


def fake_data(n: int = 100_000) -> Transitions:
    """``n`` random transitions (obs ``OBS``, actions ``ACT`` in [-1, 1]), the same for every call."""
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    z = jnp.zeros(n)
    return Transitions(
        obs=jax.random.normal(k[0], (n, OBS)), action=jax.random.uniform(k[1], (n, ACT), minval=-1, maxval=1),
        reward=jax.random.normal(k[2], (n,)), next_obs=jax.random.normal(k[3], (n, OBS)), terminated=z,
        truncated=z, episode=jnp.zeros(n, jnp.int32), rtg=z, mc_return=z - 10.0, traj_return=z,
    )


def build(name: str, overrides=None):
    """The learner ``name`` at obs ``OBS`` / act ``ACT``; SMAC gets an untrained score model's parameters."""
    learner = make_learner(name, OBS, ACT, overrides)
    if name == "smac":
        learner.set_score_params(sm.init_score_model(jax.random.PRNGKey(0), OBS, ACT, learner.config.score_config).ema_params)
    return learner


def offline_data(harness: str | None) -> Transitions:
    """The peer harness's synthetic dataset (``harness``: its directory) or, without one,
    :func:`fake_data` of the same size."""
    if not harness:
        return fake_data(200_000)
    sys.path.insert(0, os.path.abspath(harness))
    try:
        import synthetic
    except ImportError as e:
        fail(f"--peer_harness={harness}: cannot import the harness ({e})")
    return peer_transitions(synthetic.make_dataset())


def peer_transitions(d: dict) -> Transitions:
    """The peer harness's synthetic D4RL-style arrays as this library's offline ``Transitions``."""
    n = d["observations"].shape[0]
    z = jnp.zeros(n)
    return Transitions(obs=jnp.asarray(d["observations"]), action=jnp.asarray(d["actions"]),
                       reward=jnp.asarray(d["rewards"]), next_obs=jnp.asarray(d["next_observations"]),
                       terminated=jnp.asarray(d["terminals"]), truncated=z, episode=jnp.zeros(n, jnp.int32),
                       rtg=z, mc_return=z - 10.0, traj_return=z)


def offline_call(learner, data, scan: int, n_seeds: int = 1, state=None):
    """A no-argument function that runs one scan-fused dispatch of ``scan`` offline updates and
    returns the states: from fresh states of ``n_seeds`` seeds, or from the one-seed ``state``."""
    keys = jax.random.split(jax.random.PRNGKey(0), n_seeds)
    states = jax.vmap(learner.init)(keys) if state is None else jax.tree.map(lambda x: x[None], state)
    step = make_offline_step(learner, scan)
    box = {"s": unalias(states), "i": 0}

    def call():
        box["s"], _ = step(box["s"], data, keys, box["i"])
        box["i"] += scan
        return box["s"]

    return call
