"""Offline-to-online job configs.

Usage: ``--config=configs/o2o.py:TASK[,OFFLINE[,ONLINE]]``, e.g. ``configs/o2o.py:pendulum`` or
``configs/o2o.py:hopper,cql,sac``. Learner hyperparameters start from each learner's registered
defaults (``smac_jax.learners.resolve_config``) and can be overridden on the command line, e.g.
``--config.offline.agent.lr=1e-4``.
"""
from __future__ import annotations

import ml_collections

from smac_jax.learners import resolve_config

# Per task: the dataset and the budgets. The Pendulum job is the README's default job.
TASKS = {
    "pendulum": dict(
        dataset=dict(id="smac_jax/pendulum/medium-replay-v0", generate_env="Pendulum-v1",
                     generate_kind="medium-replay", generate_kwargs=dict(train_steps=20_000, eval_every=1_000)),
        offline=dict(steps=20_000, eval_every=2_000, ckpt_every=10_000, scan_steps=1_000),
        online=dict(steps=20_000, eval_every=2_000, ckpt_every=10_000, learning_starts=1_000,
                    replay=dict(init="empty", capacity=100_000)),
        eval=dict(episodes=5),
        offline_learner="smac",
        online_learner="sac",
        # Pendulum is small: 128-wide networks and a 128-wide score model keep the default job
        # (dataset generation included) within minutes on a 2-core CPU.
        agent=dict(hidden_dims=(128, 128)),
        score=dict(hidden_dim=128, steps=10_000),
    ),
    "hopper": dict(
        dataset=dict(id="smac_jax/hopper/medium-replay-v0", generate_env="Hopper-v5",
                     generate_kind="medium-replay", generate_kwargs=dict(train_steps=300_000, eval_every=10_000)),
        offline=dict(steps=100_000, eval_every=10_000, ckpt_every=50_000, scan_steps=1_000),
        online=dict(steps=50_000, eval_every=5_000, ckpt_every=25_000, learning_starts=1_000,
                    replay=dict(init="empty", capacity=1_000_000)),
        eval=dict(episodes=5),
        offline_learner="sac",
        online_learner="sac",
    ),
}


def _agent_config(name: str, task: dict) -> ml_collections.ConfigDict:
    """The learner's registered defaults with the task's overrides (keys the learner has)."""
    cfg = resolve_config(name)
    for k, v in task.get("agent", {}).items():
        if k in cfg:
            cfg[k] = v
    if "score_config" in cfg:
        for k, v in task.get("score", {}).items():
            cfg.score_config[k] = v
    return cfg


def get_config(arg: str = "pendulum") -> ml_collections.ConfigDict:
    parts = [p.strip() for p in arg.split(",")] if arg else ["pendulum"]
    task = parts[0]
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    t = TASKS[task]
    off_name = parts[1] if len(parts) > 1 else t["offline_learner"]
    on_name = parts[2] if len(parts) > 2 else t["online_learner"]

    c = ml_collections.ConfigDict()
    c.task = task
    c.seed = 0
    c.n_seeds = 3
    c.ckpt_keep = 2
    c.transfer_reset_optimizer = True  # SPEC 2 decision: optimiser states re-initialised at hand-over
    c.ref_min_score = ml_collections.config_dict.placeholder(float)  # override the dataset's metadata
    c.ref_max_score = ml_collections.config_dict.placeholder(float)

    c.dataset = ml_collections.ConfigDict(dict(
        id=t["dataset"]["id"], normalize_obs=False, reward_scale=1.0, reward_bias=0.0, gamma=0.99,
        generate=True, generate_env=t["dataset"]["generate_env"], generate_kind=t["dataset"]["generate_kind"],
        generate_seed=0, generate_kwargs=t["dataset"]["generate_kwargs"],
    ))

    c.offline = ml_collections.ConfigDict(dict(learner=off_name, **t["offline"]))
    c.offline.agent = _agent_config(off_name, t)
    online = dict(t["online"])
    replay = dict(init="empty", capacity=100_000, mixing_ratio=0.5, top_n=50)
    replay.update(online.pop("replay"))
    c.online = ml_collections.ConfigDict(dict(learner=on_name, utd=1, replay=replay, **online))
    c.online.agent = _agent_config(on_name, t)
    c.eval = ml_collections.ConfigDict(t["eval"])
    return c
