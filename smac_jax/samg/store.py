"""Fitting SAMG's C-VAE and its latent normals on an offline dataset, saving and loading them.

One saved model serves many runs and seeds: :func:`fit_or_load_cvae` loads ``path`` when it holds
a model fitted on the same dataset, observation layout and C-VAE hyperparameters, and otherwise
trains one, fits the normals over the whole dataset, and saves both there.

Files: ``path/cvae.msgpack`` (``{"params": ..., "stats": ...}``, flax msgpack) and
``path/cvae.json`` (the C-VAE config, the dataset it was fitted on, fitting time, KL and
reconstruction error on the data).
"""
from __future__ import annotations

import json
import os
from typing import Any

import flax.serialization
import jax
import ml_collections
import numpy as np

from smac_jax.errors import ConfigError
from smac_jax.samg import confidence, cvae

_JSON = "cvae.json"
_WEIGHTS = "cvae.msgpack"
#: Config fields that do not change the fitted model (progress granularity).
_NOT_MODEL = ("chunk",)

#: A KL term on the data below this after fitting is reported as posterior collapse.
COLLAPSED_KL = 1e-3


class CVAEMismatch(ConfigError):
    """A saved C-VAE was fitted on another dataset, observation layout or with other hyperparameters."""


def _model_config(config) -> dict:
    c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    out = {k: v for k, v in c.items() if k not in _NOT_MODEL}
    out["hidden_dims"] = [int(h) for h in out["hidden_dims"]]
    return out


def save_cvae(path: str, params: Any, stats: dict, config, meta: dict) -> None:
    os.makedirs(path, exist_ok=True)
    tree = jax.tree.map(np.asarray, {"params": params, "stats": stats})
    with open(os.path.join(path, _WEIGHTS), "wb") as f:
        f.write(flax.serialization.msgpack_serialize(tree))
    with open(os.path.join(path, _JSON), "w") as f:
        json.dump({"config": _model_config(config), "meta": meta}, f, indent=2)


def load_cvae(path: str) -> tuple[Any, dict, dict, dict]:
    """``(params, stats, config dict, meta)`` saved by :func:`save_cvae`."""
    with open(os.path.join(path, _JSON)) as f:
        saved = json.load(f)
    with open(os.path.join(path, _WEIGHTS), "rb") as f:
        tree = flax.serialization.msgpack_restore(f.read())
    return tree["params"], tree["stats"], saved["config"], saved["meta"]


def _expected_meta(dataset) -> dict:
    t = dataset.transitions
    return {"dataset_id": dataset.dataset_id, "normalize_obs": bool(dataset.normalize_obs),
            "obs_dim": int(t.obs.shape[-1]), "act_dim": int(t.action.shape[-1])}


def check_saved_cvae(path: str, dataset, config: ml_collections.ConfigDict) -> bool:
    """Whether ``path`` holds a C-VAE (False: none yet); :class:`CVAEMismatch` if it was fitted on
    other data or with other hyperparameters. Reads its description only (a check before a run
    writes anything)."""
    if not os.path.exists(os.path.join(path, _JSON)):
        return False
    with open(os.path.join(path, _JSON)) as f:
        saved = json.load(f)
    saved_cfg, meta = saved["config"], saved["meta"]
    for k, v in _expected_meta(dataset).items():
        if meta.get(k) != v:
            raise CVAEMismatch(f"the C-VAE at {path} was fitted with {k}={meta.get(k)!r}, but this run has "
                               f"{k}={v!r}; point cvae_path elsewhere or delete it to refit")
    if saved_cfg != _model_config(config):
        diff = sorted(k for k in set(saved_cfg) | set(_model_config(config))
                      if saved_cfg.get(k) != _model_config(config).get(k))
        raise CVAEMismatch(f"the C-VAE at {path} was fitted with other hyperparameters ({', '.join(diff)}); "
                           "point cvae_path elsewhere or delete it to refit")
    return True


def fit_or_load_cvae(path: str, dataset, config: ml_collections.ConfigDict,
                     progress: bool = True) -> tuple[Any, dict, dict]:
    """(C-VAE parameters, latent normals, meta) for ``dataset`` (an ``OfflineDataset``) from
    ``path``; fitted and saved there first when ``path`` holds none."""
    t = dataset.transitions
    expected = _expected_meta(dataset)
    if check_saved_cvae(path, dataset, config):
        params, stats, _, meta = load_cvae(path)
        return params, stats, meta
    print(f"[smac_jax] fitting the SAMG C-VAE on {dataset.dataset_id} ({int(config.steps)} steps) -> {path}")
    fit = cvae.fit_cvae(t.obs, t.action, t.next_obs, config, progress=progress)
    stats = confidence.fit_dataset_normals(fit.params, t.obs, t.action, config)
    meta = {**expected, "fit_seconds": fit.seconds, "kl_on_data": fit.kl, "recon_on_data": fit.recon,
            "final_loss": fit.log["loss"][-1] if fit.log["loss"] else None,
            "kl_curve": [[int(n), float(k)] for n, k in zip(fit.log["steps"], fit.log["kl"])]}
    save_cvae(path, fit.params, stats, config, meta)
    print(f"[smac_jax] C-VAE fitted in {fit.seconds:.0f} s: KL on the data {fit.kl:.4f}, "
          f"reconstruction error {fit.recon:.4f}")
    if fit.kl < COLLAPSED_KL:
        print(f"[smac_jax] warning: the C-VAE's posterior collapsed (KL on the data {fit.kl:.1e} < {COLLAPSED_KL}): "
              "its latent carries almost nothing, so the confidence p may not separate dataset pairs from others "
              "(docs/samg.md, 'Posterior collapse'" + ("; try cvae.decoder_action=False)" if config.decoder_action
                                                       else "; try more cvae.steps or a smaller cvae.beta_kl)"))
    return fit.params, stats, meta
