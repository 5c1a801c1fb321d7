"""ACA: Actor-Critic Alignment (Yu & Zhang, "Actor-Critic Alignment for Offline-to-Online
Reinforcement Learning", ICML 2023), the online learner. Equations, defaults, presets and
decisions: docs/aca.md.

At hand-over the offline critic is discarded and the critic is rebuilt around the offline policy
pi_0 (a frozen copy of the offline actor, group ``actor0``):

    Q(s, a) = min_i R_i(s, a) + C(log pi_0(a|s)),
    C(x)    = k (softplus(x - c_beta(s)) + c_beta(s))                (beta-clipping, eq. 12-14, 19)
    c_beta(s) = min(log pi_0(mu - beta sigma | s), log pi_0(mu + beta sigma | s))

where mu, sigma are pi_0's pre-tanh mean and scale and log pi_0 is the tanh-Gaussian density
(pre-tanh Gaussian density minus the tanh Jacobian). R_i (group ``critic``, a Q-network on
concat[obs, action]) starts as the state baseline Z_i trained by SAC+ML (:mod:`sacml`) with the
first layer's action columns set to zero, so R(s, a) = Z(s); ``target_critic`` is a hard copy.
Since C(log pi_0) is, up to the clip, k log pi_0 and the temperature restarts at 1, pi_0 is the
minimiser of the SAC actor loss under this critic at the start (k = 1): the critic agrees with
the actor.

Online (one update = critic, actor, temperature, Polyak target, then the k schedule):

    critic: sum_i mean (R_i(s, a) + C(log pi_0(a|s)) - y)^2,
            y = r + gamma (1 - terminated) [min_j Rbar_j(s', a') + C(log pi_0(a'|s')) - T log pi(a'|s')]
            (y under stop-gradient), a' ~ pi(s');
    actor:  mean (T log pi(a~|s) - Q(s, a~)), a~ ~ pi(s) reparameterised, the gradient flowing
            through R and C; global gradient norm clipped at ``actor_grad_clip`` = 0.25;
    temperature: SAC's, restarted at 1 at hand-over;
    k:      starts at k_start (c0); after each update k <- max(k - step, k_min).

All log pi / log pi_0 of the policy's samples are computed from the pre-tanh sample u (a = tanh u),
and buffer actions are clipped to [-(1 - eps), 1 - eps] before atanh, so saturated actions give
finite values. k lives in ``params["k"]`` (a scalar with no optimiser, like ``actor0``), so the
losses are plain functions of ``(params, batch, key, config)``.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from smac_jax import networks
from smac_jax.data import replay
from smac_jax.learners import sac, sacml
from smac_jax.learners.base import (
    ConfigError, Learner, TrainState, TransferError, apply_grad, checked_loss, register, sg,
)
from smac_jax.learners.bc import ACTION_CLIP_EPS, clip_actions
from smac_jax.learners.handover import check_same_structure
from smac_jax.optim import make_optimizer
from smac_jax.types import Transitions

#: Per dataset group (the paper's Table 10): beta, the k schedule (k_start, k_decay_episodes,
#: k_min) = (c0, c1, c2), and the replay initialisation (top-N trajectories; 0 = empty buffer).
PRESETS = {
    "random": dict(beta=7.0, k_start=1.0, k_decay_episodes=10.0, k_min=0.0, replay_top_n=0),
    "medium": dict(beta=7.0, k_start=1.0, k_decay_episodes=40.0, k_min=0.5, replay_top_n=0),
    "medium-replay": dict(beta=7.0, k_start=1.0, k_decay_episodes=40.0, k_min=0.5, replay_top_n=50),
    "medium-expert": dict(beta=15.0, k_start=1.0, k_decay_episodes=100.0, k_min=1.0, replay_top_n=50),
    "expert": dict(beta=15.0, k_start=1.0, k_decay_episodes=100.0, k_min=1.0, replay_top_n=50),
}
PRESET_FIELDS = ("beta", "k_start", "k_decay_episodes", "k_min")
K_DECAYS = ("span", "rate")
SOURCE_WITHOUT_BASELINE = ("fit", "critic")


def hyperparameters(config) -> dict:
    """beta and the k schedule: the config's own value where set, else the preset's."""
    if config.preset not in PRESETS:
        raise ConfigError(f"aca: preset must be one of {tuple(PRESETS)}, got {config.preset!r}")
    preset = PRESETS[config.preset]
    return {f: float(preset[f] if config[f] is None else config[f]) for f in PRESET_FIELDS}


# -- the aligned critic -------------------------------------------------------------------------
def actor_dist(config, act_dim: int, actor_params, obs):
    return networks.gaussian_actor(config, act_dim).apply(actor_params, obs)


def log_prob_pre_tanh(dist, u: jax.Array) -> jax.Array:
    """log-density of a = tanh(u) under a tanh-Gaussian: log N(u; mu, sigma) - sum_d log(1 - tanh(u_d)^2)."""
    return dist.distribution.log_prob(u) - dist.bijector.forward_log_det_jacobian(u)


def sample_pre_tanh(dist, key):
    """(u, log pi(tanh u|s)) for u ~ N(mu, sigma): the same draw as ``dist.sample_and_log_prob(seed=key)``."""
    u, logp_u = dist.distribution.sample_and_log_prob(seed=key)
    return u, logp_u - dist.bijector.forward_log_det_jacobian(u)


def c_beta(dist0, beta: float) -> jax.Array:
    """min(log pi_0(mu - beta sigma|s), log pi_0(mu + beta sigma|s)), evaluated in pre-tanh space."""
    mu, sigma = dist0.distribution.loc, dist0.distribution.scale_diag
    return jnp.minimum(log_prob_pre_tanh(dist0, mu - beta * sigma), log_prob_pre_tanh(dist0, mu + beta * sigma))


def soft_clip(x: jax.Array, c: jax.Array) -> jax.Array:
    """CLIP_beta(x) = softplus(x - c) + c: a smooth max(x, c) (eq. 12)."""
    return jax.nn.softplus(x - c) + c


def alignment_term(params, obs: jax.Array, u: jax.Array, config) -> tuple[jax.Array, dict]:
    """C(log pi_0(tanh u|s)) = k CLIP_beta(log pi_0(tanh u|s)), shape ``u.shape[:-1]``, and diagnostics."""
    dist0 = actor_dist(config, u.shape[-1], params["actor0"], obs)
    logp0 = log_prob_pre_tanh(dist0, u)
    cb = c_beta(dist0, hyperparameters(config)["beta"])
    info = {"log_pi0": logp0.mean(), "c_beta": cb.mean(), "clip_frac": (logp0 < cb).mean()}
    return params["k"] * soft_clip(logp0, cb), info


def pre_tanh_action(action: jax.Array, config) -> jax.Array:
    """atanh of a buffer action, clipped to [-(1 - eps), 1 - eps] first (finite at |a| = 1)."""
    return jnp.arctanh(clip_actions(action, config.action_clip_eps))


def aligned_q(params, obs: jax.Array, action: jax.Array, config, group: str = "critic") -> jax.Array:
    """Q(s, a) = min_i R_i(s, a) + C(log pi_0(a|s)) with R from parameter group ``group``."""
    r = networks.critic_net(config).apply(params[group], obs, action).min(0)
    return r + alignment_term(params, obs, pre_tanh_action(action, config), config)[0]


def _aligned_q_at(params, obs, u, config, group):
    """Q at a = tanh(u) for a pre-tanh sample u (C from u itself, no atanh round trip)."""
    r = networks.critic_net(config).apply(params[group], obs, jnp.tanh(u)).min(0)
    return r + alignment_term(params, obs, u, config)[0]


# -- losses -------------------------------------------------------------------------------------
def td_target(params, batch: Transitions, key, config) -> jax.Array:
    """y = r + gamma (1 - terminated) [min_j Rbar_j(s', a') + C(log pi_0(a'|s')) - T log pi(a'|s')],
    a' ~ pi(s') (the entropy term only with ``backup_entropy``)."""
    dist = actor_dist(config, batch.action.shape[-1], params["actor"], batch.next_obs)
    u, logp = sample_pre_tanh(dist, key)
    next_q = _aligned_q_at(params, batch.next_obs, u, config, "target_critic")
    if config.backup_entropy:
        next_q = next_q - sac.temperature(params) * logp
    return batch.reward + config.gamma * (1.0 - batch.terminated) * next_q


@checked_loss
def critic_loss(params, batch: Transitions, key, config):
    """sum_i mean_batch (R_i(s, a) + C(log pi_0(a|s)) - y)^2, y from :func:`td_target` (no gradient)."""
    y = sg(td_target(params, batch, key, config))
    c, info = alignment_term(params, batch.obs, pre_tanh_action(batch.action, config), config)
    r = networks.critic_net(config).apply(params["critic"], batch.obs, batch.action)  # (E, B)
    q = r + sg(c)[None]
    loss = ((q - y[None]) ** 2).mean(axis=1).sum()
    return loss, {"critic_loss": loss, "q_mean": q.mean(), "r_mean": r.mean(), "target_mean": y.mean(),
                  "k": params["k"], **info}


@checked_loss
def actor_loss(params, batch: Transitions, key, config):
    """mean_s [T log pi(a~|s) - Q(s, a~)], a~ ~ pi(s) reparameterised; the gradient flows through
    min_i R_i and through C(log pi_0(a~|s))."""
    dist = actor_dist(config, batch.action.shape[-1], params["actor"], batch.obs)
    u, logp = sample_pre_tanh(dist, key)
    q = _aligned_q_at(params, batch.obs, u, config, "critic")
    loss = (sg(sac.temperature(params)) * logp - q).mean()
    return loss, {"actor_loss": loss, "entropy": -logp.mean()}


def k_step(config) -> float:
    """How much k falls per update: (k_start - k_min) / n with ``k_decay="span"`` (k reaches k_min
    after n = k_decay_episodes * k_episode_updates updates), k_start / n with ``"rate"``."""
    h = hyperparameters(config)
    n = h["k_decay_episodes"] * config.k_episode_updates
    if n <= 0:
        return math.inf
    return (h["k_start"] - h["k_min"]) / n if config.k_decay == "span" else h["k_start"] / n


def next_k(k: jax.Array, config) -> jax.Array:
    """k <- max(k - step, k_min) (:func:`k_step`)."""
    return jnp.maximum(k - k_step(config), hyperparameters(config)["k_min"]).astype(jnp.asarray(k).dtype)


def critic_from_baseline(baseline_params, act_dim: int):
    """R's parameters from Z's: the same weights, the first layer given zero action columns
    (QNetwork reads concat[obs, action]), so R_i(s, a) = Z_i(s) for every a."""
    mlp = dict(baseline_params["params"]["v"]["mlp"])
    kernel = mlp["dense_0"]["kernel"]  # (E, obs_dim, hidden)
    zeros = jnp.zeros((kernel.shape[0], act_dim, kernel.shape[2]), kernel.dtype)
    mlp["dense_0"] = {**mlp["dense_0"], "kernel": jnp.concatenate([kernel, zeros], axis=1)}
    return {"params": {"q": {"mlp": mlp}}}


@register("aca")
class ACA(sac.SAC):
    offline_note = ("it aligns a critic with the policy it takes over at the hand-over: pre-train with sacml "
                    "and name aca as the online learner (docs/aca.md)")
    critic_loss_fn = staticmethod(critic_loss)
    actor_loss_fn = staticmethod(actor_loss)

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        cfg = sac.SAC.default_config()  # temperature starts (and restarts at hand-over) at 1
        placeholder = ml_collections.config_dict.placeholder
        cfg.preset = "medium-replay"  # random | medium | medium-replay | medium-expert | expert
        # Set any of these to override the preset's value (None: the preset's).
        cfg.beta = placeholder(float)  # beta-clipping width, in pi_0's pre-tanh stds (c_beta at mu +- beta sigma)
        cfg.k_start = placeholder(float)  # c0: k, the weight of C(log pi_0) in the critic, at hand-over
        cfg.k_decay_episodes = placeholder(float)  # c1: k's decay length (k_decay), in episodes of k_episode_updates
        cfg.k_min = placeholder(float)  # c2: the floor k decays to, <= k_start
        cfg.k_decay = "span"  # "span": (c0 - c2) / (c1 * 1000) per update | "rate": c0 / (c1 * 1000)
        cfg.k_episode_updates = 1000  # updates per "episode" of the paper's schedule
        cfg.actor_grad_clip = 0.25  # global gradient-norm clip of the actor (appendix E.5)
        cfg.action_clip_eps = ACTION_CLIP_EPS  # buffer actions clipped before log pi_0
        # A Gaussian source without SAC+ML's baseline Z: "fit" Z on the offline data at hand-over
        # (eq. 8-9 with the source policy), or "critic": R copies the source critic.
        cfg.source_without_baseline = "fit"
        cfg.baseline_fit_steps = 10_000  # "fit": optimiser steps of Z's fit at hand-over (minibatch batch_size), >= 0
        cfg.baseline_fit_lr = 3e-4  # "fit": learning rate of Z's fit
        cfg.baseline_fit_rows = 200_000  # at most this many dataset rows kept for the fit
        cfg.baseline_backup_entropy = False  # as SAC+ML's (eq. 9 has no entropy term)
        cfg.baseline_logp_floor = placeholder(float)  # as SAC+ML's (0.0: the paper's CQL variant)
        return cfg

    def __init__(self, config, obs_dim: int, act_dim: int):
        def need(ok, msg):
            if not ok:
                raise ConfigError(f"aca: {msg}")

        need(config.preset in PRESETS, f"preset must be one of {tuple(PRESETS)}, got {config.preset!r}")
        need(config.k_decay in K_DECAYS, f"k_decay must be one of {K_DECAYS}, got {config.k_decay!r}")
        need(config.source_without_baseline in SOURCE_WITHOUT_BASELINE,
             f"source_without_baseline must be one of {SOURCE_WITHOUT_BASELINE}, got {config.source_without_baseline!r}")
        h = hyperparameters(config)
        need(h["beta"] > 0, f"beta must be > 0, got {h['beta']}")
        need(h["k_decay_episodes"] >= 0, f"k_decay_episodes must be >= 0, got {h['k_decay_episodes']}")
        need(h["k_min"] <= h["k_start"], f"k_min ({h['k_min']}) must not exceed k_start ({h['k_start']})")
        need(config.k_episode_updates >= 1, f"k_episode_updates must be >= 1, got {config.k_episode_updates}")
        need(config.actor_grad_clip > 0, f"actor_grad_clip must be > 0, got {config.actor_grad_clip}")
        need(config.baseline_fit_steps >= 0, f"baseline_fit_steps must be >= 0, got {config.baseline_fit_steps}")
        need(config.baseline_fit_rows >= 1, f"baseline_fit_rows must be >= 1, got {config.baseline_fit_rows}")
        super().__init__(config, obs_dim, act_dim)
        self._fit_data: Transitions | None = None

    def optimizers(self):
        c = self.config
        return {
            "actor": make_optimizer(c, c.actor_lr, grad_clip=c.actor_grad_clip),
            "critic": make_optimizer(c, c.critic_lr),
            "log_temp": make_optimizer(c, c.temp_lr),
        }

    def init_params(self, key) -> dict:
        """SAC's groups plus pi_0 (= the actor) and k = k_start. Without a hand-over R is a fresh critic."""
        params = super().init_params(key)
        params["actor0"] = params["actor"]
        params["k"] = jnp.asarray(hyperparameters(self.config)["k_start"], jnp.float32)
        return params

    def update(self, state: TrainState, batch: Transitions, key):
        state, info = super().update(state, batch, key)  # critic, actor, temperature, target critic
        return state.replace(params={**state.params, "k": next_k(state.params["k"], self.config)}), info

    # -- data for fitting Z -------------------------------------------------------------------
    def prepare(self, dataset, workdir: str, progress: bool = True) -> None:
        """Keep the offline transitions, for fitting Z at hand-over from a source without one."""
        self.set_fit_data(dataset.transitions)

    def set_fit_data(self, transitions: Transitions) -> None:
        """The transitions Z is fitted on (at most ``baseline_fit_rows``, drawn with a fixed seed)."""
        n = int(np.asarray(transitions.reward).shape[0])
        keep = self.config.baseline_fit_rows
        idx = np.sort(np.random.default_rng(0).choice(n, keep, replace=False)) if n > keep else np.arange(n)
        self._fit_data = jax.tree.map(lambda x: np.asarray(x)[idx], transitions)

    def fit_baseline(self, key, actor_params, log_temp, pair: str):
        """Z fitted by ``baseline_fit_steps`` steps of :func:`sacml.baseline_loss` with pi = the source policy."""
        if self._fit_data is None:  # not prepared: a usage error, as SMAC's missing score model
            raise ConfigError(
                f"{pair}: the source has no state baseline Z, and ACA fits one on the offline data at "
                "hand-over (source_without_baseline='fit'), but it was given no data: call "
                "learner.prepare(dataset, workdir) (the pipeline does) or learner.set_fit_data(transitions), "
                "or set source_without_baseline='critic'"
            )
        c = self.config
        data = jax.tree.map(jnp.asarray, self._fit_data)
        k_init, k_fit = jax.random.split(key)
        z = sacml.baseline_net(c).init(k_init, jnp.zeros((1, self.obs_dim)))
        opt = make_optimizer(c, c.baseline_fit_lr)
        fixed = {"actor": actor_params, "log_temp": log_temp}

        def step(i, carry):
            z, opt_state = carry
            k_batch, k_loss = jax.random.split(jax.random.fold_in(k_fit, i))
            batch = replay.sample_transitions(data, k_batch, c.batch_size)
            grads, _ = jax.grad(lambda p: sacml.baseline_loss({**fixed, "baseline": p}, batch, k_loss, c),
                                has_aux=True)(z)
            return apply_grad(opt, z, opt_state, grads)

        z, _ = jax.lax.fori_loop(0, c.baseline_fit_steps, step, (z, opt.init(z)))
        return z

    # -- hand-over ----------------------------------------------------------------------------
    def transfer(self, key, src_state: TrainState, src_learner: Learner) -> TrainState:
        """pi_0 = the source actor; R from the source's Z (SAC+ML), else per ``source_without_baseline``;
        target hard-copied; temperature back to ``init_temperature``; k = k_start; fresh optimisers.
        An ACA source is continued as it is (only the optimisers are fresh)."""
        pair = f"{src_learner.name} -> {self.name}"
        if src_learner.actor_kind != "gaussian" or src_learner.config.get("policy_extraction") == "deterministic_mean":
            raise TransferError(
                f"{pair}: ACA aligns its critic with the log-density of a stochastic (tanh-Gaussian) offline "
                f"policy, and {src_learner.name} has a deterministic actor; use a Gaussian-actor offline "
                "learner (e.g. sacml, sac, cql, calql, iql, awac, bc, smac)"
            )
        k_fresh, k_fit = jax.random.split(key)
        fresh = self.init(k_fresh)
        src = src_state.params
        if "actor" not in src:
            raise TransferError(f"{pair}: {src_learner.name} has no actor")
        params = dict(fresh.params)
        if "actor0" in src:  # ACA -> ACA
            for g in params:
                check_same_structure(fresh.params[g], src[g], g, src_learner.name, self.name)
            return self.fresh_optimizer_state(fresh.replace(params={g: src[g] for g in params}))
        check_same_structure(fresh.params["actor"], src["actor"], "actor", src_learner.name, self.name)
        if "baseline" in src:
            critic = critic_from_baseline(src["baseline"], self.act_dim)
        elif self.config.source_without_baseline == "fit":
            log_temp = src.get("log_temp", fresh.params["log_temp"])
            critic = critic_from_baseline(self.fit_baseline(k_fit, src["actor"], log_temp, pair), self.act_dim)
        elif "critic" in src:
            critic = src["critic"]
        else:
            raise TransferError(f"{pair}: source_without_baseline='critic' but {src_learner.name} has no critic; "
                                "use source_without_baseline='fit'")
        check_same_structure(fresh.params["critic"], critic, "critic", src_learner.name, self.name)
        params.update(actor=src["actor"], actor0=src["actor"], critic=critic, target_critic=critic)
        return self.fresh_optimizer_state(fresh.replace(params=params))
