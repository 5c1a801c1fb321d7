"""Does SAMG's C-VAE tell the dataset's state-action pairs from others? Fit it and look.

Fits the C-VAE of SAMG (docs/samg.md) on a task's dataset once per variant (decoder x final KL
weight, at a given width and budget) and reports, for each: the KL term and reconstruction error on the data (a KL near 0 is posterior collapse), and
the confidence p(s, a) on the dataset's own pairs against the same states with uniformly random
actions (mean p, and the share of pairs above the threshold). A useful C-VAE gives the dataset's
pairs a clearly higher p.

    python experiments/cvae_check.py --task=hopper --steps=10000 --decoder_action=true,false \
        --out=runs/cvae-check
    python experiments/cvae_check.py --task=hopper --steps=10000 --hidden_dims=256,256 \
        --decoder_action=false --beta_kl=0.5,0.1,0.02 --out=runs/cvae-check-beta

Writes ``<out>/cvae_check.json``; every fit is stored in ``<out>/<variant>`` and reused when the
script runs again with the same settings.
"""
from __future__ import annotations

import itertools
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "configs"))
import o2o as o2o_configs  # noqa: E402

from smac_jax.cli import fail, run_cli  # noqa: E402
from smac_jax.data.dataset import load_dataset_from_config  # noqa: E402
from smac_jax.runtime import tune_host_allocator  # noqa: E402
from smac_jax.samg import confidence, store  # noqa: E402

_TASK = flags.DEFINE_string("task", "hopper", "Task in configs/o2o.py (its dataset).")
_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_STEPS = flags.DEFINE_integer("steps", 0, "C-VAE training steps (0: SAMG's default).")
_DEC = flags.DEFINE_list("decoder_action", ["true", "false"], "Decoder variants: true = p(s'|z,s,a), "
                         "false = p(s'|z,s).")
_BETA = flags.DEFINE_list("beta_kl", [], "Final KL weights to compare (empty: SAMG's default).")
_HIDDEN = flags.DEFINE_list("hidden_dims", [], "C-VAE hidden sizes (empty: SAMG's default).")
_ROWS = flags.DEFINE_integer("rows", 20_000, "Dataset rows on which p is compared (the first ones).")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show progress bars.")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    tune_host_allocator()
    if _TASK.value not in o2o_configs.TASKS:
        fail(f"--task: unknown task {_TASK.value!r}; known: {', '.join(o2o_configs.TASKS)}")
    variants = []
    for v in _DEC.value:
        if v.lower() not in ("true", "false"):
            fail(f"--decoder_action takes true / false values, got {v!r}")
        variants.append(v.lower() == "true")
    if _STEPS.value < 0 or _ROWS.value < 1:
        fail("--steps must be >= 0 and --rows >= 1")
    try:
        betas = [float(b) for b in _BETA.value] or [None]
        hidden = tuple(int(h) for h in _HIDDEN.value)
    except ValueError:
        fail("--beta_kl takes numbers and --hidden_dims integers")
    if any(b is not None and b < 0 for b in betas) or any(h < 1 for h in hidden):
        fail("--beta_kl must be >= 0 and --hidden_dims >= 1")
    cfg = o2o_configs.get_config(f"{_TASK.value},iql,samg_sac")
    dc = cfg.dataset
    dataset = load_dataset_from_config(dc)
    t = dataset.transitions
    n = min(_ROWS.value, t.obs.shape[0])
    obs, act = jnp.asarray(t.obs[:n]), jnp.asarray(t.action[:n])
    rand = jax.random.uniform(jax.random.PRNGKey(0), act.shape, minval=-1.0, maxval=1.0)
    results = dict(task=_TASK.value, dataset=dc.id, rows=n, variants=[])
    agent = cfg.online.agent
    if _STEPS.value:
        agent.cvae.steps = _STEPS.value
    if hidden:
        agent.cvae.hidden_dims = hidden
    for dec, beta in itertools.product(variants, betas):
        agent.cvae.decoder_action = dec
        if beta is not None:
            agent.cvae.beta_kl = beta
        name = f"decoder_action_{str(dec).lower()}_s{int(agent.cvae.steps)}"
        name += "".join(f"_{k}{v}" for k, v in (("beta", beta), ("h", "x".join(map(str, hidden)))) if v)
        path = os.path.join(_OUT.value, name)
        params, stats, meta = store.fit_or_load_cvae(path, dataset, agent.cvae, progress=_PROGRESS.value)
        p_data = np.asarray(confidence.coefficient(params, stats, obs, act, agent))
        p_rand = np.asarray(confidence.coefficient(params, stats, obs, rand, agent))
        row = dict(decoder_action=dec, beta_kl=float(agent.cvae.beta_kl),
                   hidden_dims=list(agent.cvae.hidden_dims), steps=int(agent.cvae.steps), kl_on_data=meta["kl_on_data"],
                   recon_on_data=meta["recon_on_data"], fit_seconds=meta["fit_seconds"],
                   kl_curve=meta.get("kl_curve"),
                   p_data_mean=float(p_data.mean()), p_random_mean=float(p_rand.mean()),
                   above_threshold_data=float((p_data > 0).mean()), above_threshold_random=float((p_rand > 0).mean()))
        results["variants"].append(row)
        print(f"[cvae_check] decoder_action={dec}, beta_kl={agent.cvae.beta_kl}: KL on data {row['kl_on_data']:.2e}, p on data "
              f"{row['p_data_mean']:.3f} ({100 * row['above_threshold_data']:.0f}% above the threshold), p with "
              f"random actions {row['p_random_mean']:.3f} ({100 * row['above_threshold_random']:.0f}%)")
    os.makedirs(_OUT.value, exist_ok=True)
    with open(os.path.join(_OUT.value, "cvae_check.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    run_cli(main)
