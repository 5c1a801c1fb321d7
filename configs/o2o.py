"""Offline-to-online job configs.

Usage: ``--config=configs/o2o.py:TASK[,OFFLINE[,ONLINE]]``, e.g. ``configs/o2o.py:pendulum`` or
``configs/o2o.py:hopper,cql,sac``. Learner hyperparameters start from each learner's registered
defaults (``smac_jax.learners.resolve_config``) and can be overridden on the command line, e.g.
``--config.offline.agent.critic_lr=1e-4``.
"""
from __future__ import annotations

import ml_collections

from smac_jax.data.d4rl import D4RL_REFERENCE_SCORES
from smac_jax.errors import ConfigError
from smac_jax.learners import resolve_config

# SMAC settings per task (docs/algorithms.md, SMAC; evidence in docs/results_smac_offline.md):
# * kappa = 1 (the learner's default). On Pendulum medium (20k updates, 3 seeds) kappa 10 / 100
#   raised the mean of the last three evaluations (51.0 / 46.3 against 40.7); on Hopper
#   medium-replay kappa 10 lowered the final score (28.5 against 34.6): no value held on both.
# * sm_target = "direction" (the learner's default): on Walker2d and Hopper medium-replay it raised
#   SMAC's offline score from 28.4 to 57.7 and from 23.5 to 31.4; on the Pendulum medium draws it
#   moved it from 94.9 to 93.6 and from 21.0 to 7.6. The paper's form is "alpha_score".
# * sm_shrink = 0.3 (the learner's default): on the third Hopper / Walker2d / Pendulum draws it
#   raised SMAC's 20k-update score from 18.4 / 55.8 / 93.5 (sm_shrink 1) to 29.2 / 62.9 / 94.4,
#   and kept the Walker2d policy and critic stable to 60k updates.
# * score_w = 1.0 (condition the score on the best trajectories); not swept.
# * optimizer = "muon" with consistent_rms 0.2 and muon_scope "hidden" (the paper's choice; with
#   Muon on hidden layers only, SMAC-Adam and SMAC-Muon ended within 2 points on Pendulum medium).
# * Networks 128x128 and a 128-wide score model on both tasks: the 256-wide defaults cost 4x more
#   per Muon step on a 2-core CPU (docs/README.md, benchmarks) and would not fit three methods x
#   three seeds into a few hours. On an accelerator use --config.offline.agent.hidden_dims=256,256
#   --config.online.agent.hidden_dims=256,256 (both sides: the hand-over needs equal widths).
#
# Per task: the dataset and the budgets (the same for every task but quickstart: 20k offline updates,
# 20k online environment steps, 3 seeds, 128x128 networks, a 128-wide score model fit for 10k steps; raise
# them on an accelerator, e.g. --config.offline.steps=1000000 as in the papers). pendulum-medium is
# the default task of experiments/o2o.py; "quickstart" (the README's first command, SMAC and TD3+BC
# offline) is the same dataset and offline budget with half the online steps (online updates from
# step 500, evaluations every 1k offline / 500 online steps), so that it runs in under 20 minutes on
# 2 CPU cores. (After 10k offline updates SMAC's hand-over to SAC dropped on 4 of 9 seeds, after 20k on
# none of 21: docs/results/handover_replay.md.)
def _task(dataset_id: str, env: str, kind: str, capacity: int, budget: int = 20_000, eval_interval: int = 2_000,
          online_eval_interval: int | None = None, learning_starts: int = 1_000, generate: bool = True,
          reward: str = "env", reward_scale: float = 1.0, reward_bias: float = 0.0,
          ref_scores: tuple[float, float] | None = None, online_budget: int | None = None,
          env_kwargs: dict | None = None, **generate_kwargs) -> dict:
    """A task: the dataset (``generate_kwargs`` go to the dataset factory; ``generate=False``: a
    dataset to download, never generated), ``budget`` offline updates and as many online steps
    (``online_budget``, if given, online steps),
    evaluated every ``eval_interval`` of each (``online_eval_interval``, if given, in the online
    phase), the online updates starting after ``learning_starts`` steps; ``reward``,
    ``reward_scale``, ``reward_bias`` as in the ``dataset`` section of :func:`get_config`;
    ``ref_scores``: the (min, max) reference returns of normalised scores (default: the dataset's);
    ``env_kwargs``: as ``dataset.env_kwargs``."""
    return dict(
        # the ``dataset`` section's task-specific fields (documented in get_config)
        dataset=dict(id=dataset_id, generate_env=env, generate_kind=kind, generate_kwargs=generate_kwargs,
                     generate=generate, reward=reward, reward_scale=reward_scale, reward_bias=reward_bias,
                     env_kwargs=dict(env_kwargs or {})),
        offline=dict(
            steps=budget,  # offline gradient updates (every network once per update); a multiple of scan_steps
            eval_every=eval_interval,  # updates between evaluations (and one after the last); multiple of scan_steps
            ckpt_every=10_000,  # updates between checkpoints; a multiple of scan_steps
            # updates fused into one device dispatch (lax.scan); also where the random keys of a
            # dispatch are split from, so changing it gives another (equally valid) minibatch draw
            scan_steps=1_000,
        ),
        online=dict(
            steps=online_budget or budget,  # environment steps per seed (one environment per seed)
            eval_every=online_eval_interval or eval_interval,  # environment steps between evaluations (and at 0)
            ckpt_every=10_000,  # environment steps between checkpoints (learners, replay buffers, envs)
            # environment steps the handed-over policy collects before the first online update
            learning_starts=learning_starts,
            replay=dict(init="empty", capacity=capacity),  # the task's replay settings (see get_config)
        ),
        # episodes: evaluation episodes per seed, deterministic policy tanh(mean); env: where they run,
        # "gymnasium" (the dataset's Gymnasium environment, on the host) or "jax" (its JAX-native port,
        # every episode in one compiled program: for wide sweeps on an accelerator; other start-state
        # draws, and MJX's float32 physics for the locomotion tasks; docs/algorithms.md)
        eval=dict(episodes=5, env="gymnasium"),
        offline_learner="smac",  # the task's default offline learner (the config argument's OFFLINE)
        online_learner="sac",  # the task's default online learner (the config argument's ONLINE)
        agent=dict(hidden_dims=(128, 128)),  # overrides of both learners' fields (those they have)
        score=dict(hidden_dim=128, steps=10_000),  # overrides of a learner's score_config (SMAC's score model)
        ref_scores=ref_scores,  # (min, max) reference returns for normalised scores; None: the dataset's
    )


# Pendulum's SAC run (the dataset factory's recipe): evaluated every 1,000 steps, its actor kept
# every episode (200 steps), since SAC goes from random to near-expert within about 1,000 steps.
_PENDULUM_RUN = dict(train_steps=20_000, eval_every=1_000, snapshot_every=200)

TASKS = {
    # Every transition of a SAC run on Pendulum-v1 up to its medium snapshot (a few thousand steps,
    # mostly near-random).
    "pendulum": _task("smac_jax/pendulum/medium-replay-v0", "Pendulum-v1", "medium-replay", 100_000,
                      **_PENDULUM_RUN),
    # A single medium policy (a third of the way from random to the SAC expert), 100k transitions.
    "pendulum-medium": _task("smac_jax/pendulum/medium-v0", "Pendulum-v1", "medium", 100_000,
                             n_transitions=100_000, **_PENDULUM_RUN),
    # The default job: the same dataset, 20k offline updates + 10k online steps. The transfer drop's
    # window (the first 10% of the online phase, 1,000 steps) must hold evaluations after some
    # updates, so the online updates start after 500 steps (not 1,000) and it evaluates every 500.
    "quickstart": _task("smac_jax/pendulum/medium-v0", "Pendulum-v1", "medium", 100_000, online_budget=10_000,
                        eval_interval=1_000, online_eval_interval=500, learning_starts=500,
                        n_transitions=100_000, **_PENDULUM_RUN),
    # Every transition of a SAC run on Hopper-v5 / Walker2d-v5 up to its medium snapshot.
    "hopper": _task("smac_jax/hopper/medium-replay-v0", "Hopper-v5", "medium-replay", 1_000_000,
                    train_steps=150_000, eval_every=10_000),
    "walker": _task("smac_jax/walker2d/medium-replay-v0", "Walker2d-v5", "medium-replay", 1_000_000,
                    train_steps=150_000, eval_every=10_000),
    # The same on HalfCheetah-v5, whose episodes never terminate (always 1,000 steps), from a shorter
    # SAC run (60k steps, which a 2-core CPU runs in about 12 minutes; seed 0's expert returns 3,118,
    # its medium snapshot comes at step 39,000: 39 episodes).
    "halfcheetah": _task("smac_jax/halfcheetah/medium-replay-v0", "HalfCheetah-v5", "medium-replay", 1_000_000,
                         train_steps=60_000, eval_every=5_000),
    # The SMAC paper's six D4RL tasks (nothing is generated). Minari hosts no D4RL locomotion data (its
    # mujoco/ namespace is simple / medium / expert, regenerated on the v5 environments): the two
    # medium-replay tasks read D4RL's own files imported with experiments/import_d4rl.py; the others
    # Minari's D4RL/ copies (`minari download D4RL/kitchen/partial-v2`). Kitchen needs the
    # "kitchen" extra (Gymnasium-Robotics, MuJoCo < 3.12), the Adroit tasks the "adroit" extra.
    # The binary Adroit tasks (Cal-QL's door-, pen-, relocate-binary): reward 1 on a step where the
    # task reports success, else 0, scaled by 10 and shifted by -5 as Cal-QL does; the score is the
    # success rate. Their data here: Minari's "cloned" datasets (human demonstrations and rollouts
    # of a behaviour-cloned policy, the closest to Cal-QL's 25 demonstrations + 500 BC rollouts).
    # Scores with D4RL's reference returns (the normalisation the paper reports).
    "d4rl-hopper-medium-replay": _task("d4rl/hopper/medium-replay-v2", "Hopper-v5", "medium-replay",
                                       1_000_000, generate=False, ref_scores=D4RL_REFERENCE_SCORES["hopper"]),
    "d4rl-walker2d-medium-replay": _task("d4rl/walker2d/medium-replay-v2", "Walker2d-v5", "medium-replay",
                                         1_000_000, generate=False, ref_scores=D4RL_REFERENCE_SCORES["walker2d"]),
    "d4rl-kitchen-partial": _task("D4RL/kitchen/partial-v2", "FrankaKitchen-v1", "partial", 1_000_000,
                                  generate=False, ref_scores=D4RL_REFERENCE_SCORES["kitchen"]),
    **{f"d4rl-{name}-binary": _task(f"D4RL/{name}/cloned-v2", env, "cloned", 1_000_000, generate=False,
                                    reward="success", reward_scale=10.0, reward_bias=-5.0)
       for name, env in (("door", "AdroitHandDoor-v1"), ("pen", "AdroitHandPen-v1"),
                         ("relocate", "AdroitHandRelocate-v1"))},
}

# AntMaze (the ACA and SAMG papers' sparse-reward benchmark), as Minari hosts D4RL's six datasets
# (`minari download D4RL/antmaze/umaze-v1`, one id per call; the "antmaze" extra provides the environments): the
# stored sparse reward (1 at the goal) scaled by 10 and shifted by -5 as Cal-QL does; evaluations
# also log the success rate (`eval_success`). Evaluation and online episodes end at the goal
# (continuing_task=False, the goal kept fixed), as in D4RL's evaluation environment, where
# Gymnasium-Robotics' default would go on rewarding every step spent there: an episode's return is
# then 1 if it reached the goal, else 0, and the score (reference returns 0 and 1) is the success
# rate in percent.
_ANTMAZES = {"umaze": "AntMaze_UMaze-v4", "umaze-diverse": "AntMaze_UMaze-v4",
             "medium-play": "AntMaze_Medium-v4", "medium-diverse": "AntMaze_Medium_Diverse_GR-v4",
             "large-play": "AntMaze_Large-v4", "large-diverse": "AntMaze_Large_Diverse_GR-v4"}
TASKS.update({f"d4rl-antmaze-{name}": _task(f"D4RL/antmaze/{name}-v1", env, name, 1_000_000, generate=False,
                                            reward_scale=10.0, reward_bias=-5.0,
                                            ref_scores=D4RL_REFERENCE_SCORES["antmaze"],
                                            env_kwargs=dict(continuing_task=False, reset_target=False))
              for name, env in _ANTMAZES.items()})

#: The six D4RL tasks of the SMAC paper (configs above; their datasets are downloaded with Minari).
PAPER_TASKS = ("d4rl-hopper-medium-replay", "d4rl-walker2d-medium-replay", "d4rl-kitchen-partial",
               "d4rl-door-binary", "d4rl-pen-binary", "d4rl-relocate-binary")


# Per online learner: the online-phase settings its paper fine-tunes with, applied by get_config
# whenever that learner is the online side (dotted keys under ``online``; a command-line override
# still wins). Cal-QL fine-tunes with separate offline and online buffers sampled 50/50 (Nakamoto
# et al., 2023, RLPD-style "mix"); IQL fine-tunes with the offline data kept in its replay buffer
# (Kostrikov et al., 2022), i.e. "full".
ONLINE_LEARNER_DEFAULTS = {
    "calql": {"replay.init": "mix", "replay.mixing_ratio": 0.5},
    "iql": {"replay.init": "full"},
    # ACA starts its buffer with the 50 highest-return dataset trajectories (its medium-replay,
    # medium-expert and expert presets; random and medium use none: --config.online.replay.top_n=0).
    # docs/aca.md.
    "aca": {"replay.init": "top_n", "replay.top_n": 50},
    # SAMG fine-tunes from online data only: a small buffer (20k), no dataset rows, seeded with
    # 2,000 steps of the handed-over offline policy before the first update (docs/samg.md).
    **{f"samg_{base}": {"replay.init": "empty", "replay.capacity": 20_000, "learning_starts": 2_000}
       for base in ("sac", "awac", "cql", "calql", "iql")},
}


# On the AntMaze tasks, the AntMaze settings of the papers whose benchmark it is, applied when that
# learner is the online side (dotted keys from the config's root; a command-line override still wins).
# ACA subtracts 1 from every reward, offline and online (after IQL), in place of Cal-QL's x10 - 5,
# and clips with beta 3 (its paper's AntMaze setting; the paper's unsquashed Gaussian is not carried
# over, docs/aca.md). SAMG keeps a 50k online buffer there, its CQL variant a threshold p_m of 0.7,
# and both CQL variants a conservative weight of 2 instead of 5 (docs/samg.md).
ANTMAZE_ONLINE_LEARNER_DEFAULTS = {
    "aca": {"dataset.reward_scale": 1.0, "dataset.reward_bias": -1.0, "online.agent.beta": 3.0},
    **{f"samg_{base}": {"online.replay.capacity": 50_000} for base in ("sac", "awac", "iql")},
    "samg_cql": {"online.replay.capacity": 50_000, "online.agent.p_threshold": 0.7, "online.agent.cql_alpha": 2.0},
    "samg_calql": {"online.replay.capacity": 50_000, "online.agent.cql_alpha": 2.0},
}


def _set_dotted(node: ml_collections.ConfigDict, key: str, value) -> None:
    *path, leaf = key.split(".")
    for p in path:
        node = node[p]
    node[leaf] = value


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


def get_config(arg: str = "pendulum-medium") -> ml_collections.ConfigDict:
    parts = [p.strip() for p in arg.split(",")] if arg else ["pendulum-medium"]
    if len(parts) > 3:
        raise ConfigError(f"config {arg!r}: expected TASK[,OFFLINE[,ONLINE]], got {len(parts)} parts")
    task = parts[0]
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    t = TASKS[task]
    off_name = parts[1] if len(parts) > 1 else t["offline_learner"]
    on_name = parts[2] if len(parts) > 2 else t["online_learner"]

    c = ml_collections.ConfigDict()
    c.task = task  # the task's name (a key of TASKS), kept in config.json; set by the config argument
    c.seed = 0  # first seed, >= 0: the run trains seeds seed, seed + 1, ..., seed + n_seeds - 1
    c.n_seeds = 3  # seeds trained together (vmapped over a leading seed axis), >= 1
    c.ckpt_keep = 2  # checkpoints kept per phase (the latest ones), >= 1
    c.transfer_reset_optimizer = True  # optimiser states re-initialised at hand-over (docs/algorithms.md)
    # Settings x seeds in one program (docs/sweeps.md): "" (none) or "PATH=V1,V2,...[; PATH=...]" over float
    # hyperparameters of either learner, e.g. "offline.agent.kappa=0.3,1,3"; every combination runs
    # n_seeds seeds as lanes of the same vmapped programs, each setting's outputs in settings/<k>/.
    c.vmap_sweep = ""
    c.ref_min_score = ml_collections.config_dict.placeholder(float)  # override the dataset's metadata
    c.ref_max_score = ml_collections.config_dict.placeholder(float)  # with ref_min_score: both or neither
    if t["ref_scores"] is not None:
        c.ref_min_score, c.ref_max_score = (float(v) for v in t["ref_scores"])

    d = t["dataset"]
    c.dataset = ml_collections.ConfigDict(dict(
        id=d["id"],  # the Minari dataset id the run loads (written by the generator when generate is set)
        # standardise obs and next_obs with the dataset's mean and std, (o - mean) / (std + 1e-3); the
        # same statistics are applied to the online and evaluation environments
        normalize_obs=False,
        # "env" (the stored / environment reward) or "success" (1 on a step whose info["success"]
        # is true, else 0, in the data and online; the score is then the success rate in percent)
        reward=d["reward"],
        reward_scale=d["reward_scale"],  # reward * reward_scale + reward_bias, in the data and online
        reward_bias=d["reward_bias"],  # added after reward_scale (see above); evaluation returns use the raw reward
        # discount of the Monte-Carlo returns computed on load (mc_return: Cal-QL's bound, the Q-vs-return
        # diagnostics), in (0, 1]; must equal the offline learner's gamma and a Cal-QL learner's (else refused)
        gamma=0.99,
        # stored actions may exceed the action space's bounds by this much (clipped to them); a
        # dataset with actions further out is refused
        action_tolerance=1e-3,
        # True: a dataset id that is not local is generated by the dataset factory (a SAC run on
        # generate_env) before the run; False: it must be downloaded / imported, never generated
        generate=d["generate"],
        generate_env=d["generate_env"],  # Gymnasium id of the environment the dataset factory trains SAC on
        generate_kind=d["generate_kind"],  # which D4RL-style kind it writes: random | medium | medium-replay | expert
        generate_seed=0,  # seed of the dataset factory's SAC run and rollouts, >= 0
        # keyword arguments of the dataset factory (generate_datasets: train_steps, eval_every,
        # snapshot_every, n_transitions, ...)
        generate_kwargs=d["generate_kwargs"],
        # keyword arguments for the environments the run builds (evaluation and online, gym.make's
        # over the dataset's stored spec), e.g. AntMaze's continuing_task=False
        env_kwargs=d["env_kwargs"],
    ))

    # learner: the offline learner's registered name (the config argument's OFFLINE); steps /
    # eval_every / ckpt_every / scan_steps: the task's (see _task)
    c.offline = ml_collections.ConfigDict(dict(learner=off_name, **t["offline"]))
    c.offline.agent = _agent_config(off_name, t)  # the offline learner's hyperparameters (its default_config)
    online = dict(t["online"])
    replay = dict(
        # what the online learner samples: "empty" (one buffer, starting empty), "full" (the dataset
        # copied in first), "mix" (a separate online buffer plus the dataset, mixed per minibatch),
        # "top_n" (the top_n highest-return episodes copied in first); docs/algorithms.md, "Replay initialisations"
        init="empty",
        capacity=100_000,  # rows each seed's online buffer holds, >= 1 ("full" / "top_n" add room for dataset rows)
        mixing_ratio=0.5,  # "mix" only: share of each minibatch drawn from the dataset, in [0, 1)
        top_n=50,  # "top_n" only: how many highest-return dataset episodes are copied in, >= 0 (0 = an empty buffer)
    )
    replay.update(online.pop("replay"))
    # steps / eval_every / ckpt_every / learning_starts: the task's (see _task)
    c.online = ml_collections.ConfigDict(dict(
        learner=on_name,  # the online learner's registered name (the config argument's ONLINE)
        # where the online environments run: "gymnasium" (on the host, called from inside the online
        # program) or "jax" (a JAX-native port stepped on the device with no host call: Pendulum-v1 through
        # gymnax, Hopper-v5 / Walker2d-v5 / HalfCheetah-v5 through MJX; pip install 'smac_jax[jax-envs]';
        # docs/algorithms.md, "JAX-native environments")
        env="gymnasium",
        utd=1,  # update-to-data ratio: gradient updates per environment step, >= 1
        scan_steps=100,  # environment steps fused into one device dispatch, >= 1 (the results do not depend on it)
        # step the environments through the library's lean host call instead of the public
        # io_callback (opt-in: it relies on JAX internals; falls back with a warning where they
        # changed; same results, 4-7% faster per online step at one seed on CPU, docs/README.md)
        lean_host_call=False,
        # environment steps after learning_starts during which the online updates train the critic
        # only; the handed-over policy (actor, temperature) is held still (docs/algorithms.md,
        # "Critic warm-up"). 0 = off
        critic_warmup=0,
        replay=replay,  # the online replay buffer (fields above)
        **online,
    ))
    c.online.agent = _agent_config(on_name, t)  # the online learner's hyperparameters (its default_config)
    for k, v in ONLINE_LEARNER_DEFAULTS.get(on_name, {}).items():
        _set_dotted(c.online, k, v)
    if task.startswith("d4rl-antmaze-"):
        for k, v in ANTMAZE_ONLINE_LEARNER_DEFAULTS.get(on_name, {}).items():
            _set_dotted(c, k, v)
    c.eval = ml_collections.ConfigDict(t["eval"])  # episodes (>= 1) per seed and evaluation; env (see _task)
    # Metric sinks besides metrics.jsonl; each receives every row the run writes (README.md, "Outputs").
    c.log = ml_collections.ConfigDict(dict(
        tensorboard=False,  # event files in <workdir>/tensorboard/seed_<k> (pip install "smac_jax[tensorboard]")
        wandb=False,  # one Weights & Biases run per seed, grouped by the workdir's name (pip install "smac_jax[wandb]")
        wandb_project="smac_jax",  # the W&B project the runs go to
        wandb_mode="offline",  # "offline": no network, files in <workdir>/wandb (`wandb sync` uploads them); "online"; "disabled"
    ))
    # Every field exists now: a misspelt one (config.online.learing_starts = 90) is an error where it is
    # written instead of a field the run never reads. Existing fields can still be changed.
    c.lock()
    return c
