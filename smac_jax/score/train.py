"""Fitting the dataset score model on an offline dataset, saving it, and loading it back.

One saved score model serves many SMAC runs and seeds: ``fit_or_load_score_model(path, ...)``
loads ``path`` when it exists (checking it was fitted on the same dataset and observation
normalisation) and otherwise trains, saves and returns it.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from smac_jax.errors import ConfigError
from smac_jax.runtime import progress_bar
from smac_jax.score import model as sm

#: Score-config fields that only matter at query / sampling time: a saved model serves any value.
QUERY_FIELDS = ("score_w", "score_sign", "sample_noise", "sample_clip")


class ScoreModelMismatch(ConfigError):
    """A saved score model was fitted on a different dataset, observation layout or config."""


def fit_score_model(dataset, config: ml_collections.ConfigDict, seed: int = 0, progress: bool = True,
                    chunk: int = 1_000) -> tuple[sm.ScoreModelState, dict]:
    """Train the conditional DDPM on ``dataset`` (an ``OfflineDataset``) for ``config.steps`` steps.

    Returns the state and a log ``{"steps": [...], "loss": [...], "steps_per_s": float}``.
    """
    t = dataset.transitions
    obs = jnp.asarray(t.obs)
    act = jnp.asarray(t.action)
    w = sm.trajectory_weights(jnp.asarray(t.traj_return))
    key = jax.random.PRNGKey(seed)
    state = sm.init_score_model(jax.random.fold_in(key, 0), obs.shape[-1], act.shape[-1], config)
    steps = int(config.steps)
    log = {"steps": [], "loss": []}
    done = 0
    t0 = None
    with progress_bar(total=steps, desc="score model", disable=not progress, unit="step") as bar:
        while done < steps:
            n = min(chunk, steps - done)
            state, m = sm.train_steps(state, obs, act, w, jax.random.fold_in(key, done + 1), n, config)
            loss = float(np.mean(np.asarray(m["loss"])))
            if not np.isfinite(loss):
                raise FloatingPointError(f"score model training diverged at step {done + n} (loss {loss})")
            if t0 is None:  # exclude compilation from the rate
                t0, first = time.time(), done + n
            done += n
            log["steps"].append(done)
            log["loss"].append(loss)
            bar.update(n)
            bar.set_postfix(loss=f"{loss:.4f}")
    if done > first:
        log["steps_per_s"] = (done - first) / max(time.time() - t0, 1e-9)
    return state, log


def _expected_meta(dataset) -> dict:
    return {
        "dataset_id": dataset.dataset_id,
        "normalize_obs": bool(dataset.normalize_obs),
        "obs_dim": int(dataset.transitions.obs.shape[-1]),
        "act_dim": int(dataset.transitions.action.shape[-1]),
        "reward": dataset.reward,  # the returns the model is conditioned on depend on it
    }


def check_saved_score_model(path: str, dataset, config: ml_collections.ConfigDict) -> bool:
    """Whether ``path`` holds a score model (False: none yet); :class:`ScoreModelMismatch` if it was
    fitted on other data or with another config. Reads its description only (a check before a run
    writes anything)."""
    if not os.path.exists(os.path.join(path, "score_model.json")):
        return False
    with open(os.path.join(path, "score_model.json")) as f:
        saved = json.load(f)
    _check_meta(path, saved["meta"], ml_collections.ConfigDict(saved["config"]), _expected_meta(dataset), config)
    return True


def fit_or_load_score_model(path: str, dataset, config: ml_collections.ConfigDict, seed: int = 0,
                            progress: bool = True) -> tuple[Any, ml_collections.ConfigDict]:
    """(EMA parameters, score config) from ``path``; trained on ``dataset`` and saved there if missing."""
    if check_saved_score_model(path, dataset, config):
        state, cfg, _ = sm.load_score_model(path)
        return state.ema_params, cfg
    print(f"[smac_jax] fitting the score model on {dataset.dataset_id} ({int(config.steps)} steps) -> {path}")
    state, log = fit_score_model(dataset, config, seed=seed, progress=progress)
    meta = {**_expected_meta(dataset), "final_loss": log["loss"][-1], "steps_per_s": log.get("steps_per_s")}
    sm.save_score_model(path, state, config, meta, overwrite=True)
    with open(os.path.join(path, "training_log.json"), "w") as f:
        json.dump(log, f)
    return state.ema_params, ml_collections.ConfigDict(config.to_dict())


def _check_meta(path, meta, cfg, meta_expected, config) -> None:
    """ScoreModelMismatch unless the model at ``path`` (``meta``, ``cfg``) is the one asked for."""
    for k, v in meta_expected.items():
        if meta.get(k, "env" if k == "reward" else None) != v:  # models saved before "reward": "env"
            raise ScoreModelMismatch(
                f"score model at {path} was fitted with {k}={meta.get(k)!r}, but this run has {k}={v!r}; "
                "point score_model_path elsewhere or delete it to refit")
    want, have = config.to_dict(), cfg.to_dict()
    diff = sorted(k for k in set(want) | set(have) if k not in QUERY_FIELDS and want.get(k) != have.get(k))
    if diff:
        raise ScoreModelMismatch(
            f"score model at {path} was fitted with a different config ("
            + ", ".join(f"{k}={have.get(k)!r} there, {want.get(k)!r} asked" for k in diff)
            + "); point score_model_path elsewhere, or delete it to refit")
