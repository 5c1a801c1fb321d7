"""Conservative Q-Learning (Kumar et al., 2020), CQL(H) with importance sampling (docs/algorithms.md, CQL).

SAC whose critic loss carries, for every ensemble member i, the conservative penalty

    alpha_cql * mean_s [ T_cql * logsumexp_j ((Q_i(s, a_j) - log mu(a_j | s)) / T_cql) - Q_i(s, a_D) ]

where the 3n actions a_j (n = ``cql_n_actions``, default 10) are n draws from Uniform[-1, 1]^|A|
(log mu = |A| log 0.5), n draws from pi(.|s) and n draws from pi(.|s'), all evaluated at the
*current* state s, each with its own log-density subtracted (the CQL paper's importance-sampled
estimate of log int exp Q(s, a) da, as in CORL's implementation). The log-densities of the policy samples carry no
gradient, and the penalty's gradient reaches the critic only. The TD part is SAC's
(``sum_i mean_batch (Q_i(s, a) - y)^2``).

Decisions (config fields):
* ``cql_alpha`` = 5.0; ``cql_temp`` = 1.0; ``cql_n_actions`` = 10.
* ``cql_lagrange`` = False. When True the penalty of member i becomes
  ``alpha' * cql_alpha * (diff_i - cql_target_action_gap)`` with ``alpha' = clip(exp(log_alpha'), 0, 1e6)``
  trained to *maximise* it (loss :func:`alpha_prime_loss`), as in the CQL paper's Lagrange form
  and CORL / the Cal-QL reference code; ``cql_target_action_gap`` = 1.0 and ``cql_alpha_prime_init``
  = 1.0 (log alpha' = 0) by default, ``cql_alpha_prime_lr`` = 3e-4. alpha' is its own parameter group
  ``log_alpha_prime``; hand-over between two Lagrange learners keeps it (:meth:`CQL.transfer`).
* ``cql_max_target_backup`` = False. When True the TD target takes, per s', the max over
  ``cql_n_actions`` policy samples of min_i Qbar_i(s', a') (and that sample's log-prob for the
  entropy term).
* ``backup_entropy`` = False: the reference CQL / Cal-QL code (and CORL) do not subtract
  T log pi(a'|s') in the target; set it to True for SAC's soft target.
* ``cql_clip_diff_min`` / ``cql_clip_diff_max`` = -inf / inf: per-sample clip of
  ``logsumexp - Q(s, a_D)`` (CORL's option; off by default).
* The logsumexp is a sum, not a mean, over the 3n samples (no ``- log 3n``), exactly like the
  reference implementations; this only shifts the penalty by a constant (it matters for the
  Lagrange gap ``cql_target_action_gap``, whose reference values assume this form).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections

from smac_jax import networks
from smac_jax.learners import sac
from smac_jax.learners.base import ConfigError, TrainState, above, at_least, checked_loss, count, register, sg
from smac_jax.optim import make_optimizer
from smac_jax.types import Transitions

ALPHA_PRIME_MAX = 1e6


# -- the pieces of the conservative penalty ----------------------------------------------------
def uniform_log_density(act_dim: int) -> float:
    """log of the Uniform[-1, 1]^|A| density: |A| log 0.5."""
    return act_dim * math.log(0.5)


def cql_logsumexp(q_rand, q_pi, q_next_pi, logp_pi, logp_next_pi, act_dim: int, temp: float = 1.0):
    """The importance-sampled soft maximum of CQL(H):

        temp * logsumexp_j ((Q_j - log mu_j) / temp)

    over the concatenation of ``q_rand - |A| log 0.5`` (uniform samples), ``q_next_pi - logp_next_pi``
    (samples of pi(.|s')) and ``q_pi - logp_pi`` (samples of pi(.|s)), along the last axis.

    Shapes: the ``q_*`` arrays are ``(..., B, n)`` (e.g. ``(E, B, n)`` for an ensemble), the log-probs
    ``(B, n)`` (broadcast against them). Returns ``(..., B)``. The caller decides about gradients
    (the learner passes stop-gradient log-probs).
    """
    cat = jnp.concatenate(
        [
            q_rand - uniform_log_density(act_dim),
            q_next_pi - logp_next_pi,
            q_pi - logp_pi,
        ],
        axis=-1,
    )
    return temp * jax.scipy.special.logsumexp(cat / temp, axis=-1)


def alpha_prime(params) -> jax.Array:
    """The Lagrange multiplier alpha' = clip(exp(log_alpha'), 0, 1e6)."""
    return jnp.clip(jnp.exp(params["log_alpha_prime"]), 0.0, ALPHA_PRIME_MAX)


def q_at_samples(config, critic_params, obs, actions) -> jax.Array:
    """Q_i(s, a_j) for ``obs (B, obs_dim)`` and ``actions (n, B, A)``; returns ``(E, B, n)``.

    The n x B pairs go through the ensemble as one flat batch of rows: the same numbers as a
    ``(n, B)``-shaped batch, and on XLA CPU about 10% faster for CQL's whole update (docs/README.md,
    "Against JAX-CORL")."""
    n, bsz = actions.shape[:2]
    obs_rep = jnp.broadcast_to(obs, (n, *obs.shape)).reshape(n * bsz, obs.shape[-1])
    q = networks.critic_net(config).apply(critic_params, obs_rep, actions.reshape(n * bsz, -1))  # (E, n B)
    return jnp.swapaxes(q.reshape(q.shape[0], n, bsz), -1, -2)


def policy_samples(config, act_dim: int, actor_params, obs, key, n: int):
    """n tanh-Gaussian samples per state and their log-probs: ``(n, B, A)``, ``(n, B)``."""
    dist = networks.gaussian_actor(config, act_dim).apply(actor_params, obs)
    return dist.sample_and_log_prob(seed=key, sample_shape=(n,))


# -- losses -------------------------------------------------------------------------------------
def td_target(params, batch: Transitions, key, config, next_q_fn=sac.target_critic_q) -> jax.Array:
    """SAC's target (:func:`smac_jax.learners.sac.td_target`), or with ``cql_max_target_backup``

        y = r + gamma (1 - terminated) [max_j min_i Qbar_i(s', a'_j) - T log pi(a'_j*|s')],
        a'_j ~ pi(s'), j = 1..cql_n_actions, j* the argmax (entropy term only if ``backup_entropy``).

    ``next_q_fn`` supplies the min_i Qbar_i(s', a') term (see :func:`smac_jax.learners.sac.target_critic_q`).
    """
    if not config.cql_max_target_backup:
        return sac.td_target(params, batch, key, config, next_q_fn)
    act_dim = batch.action.shape[-1]
    a, logp = policy_samples(config, act_dim, params["actor"], batch.next_obs, key, config.cql_n_actions)
    obs_rep = jnp.broadcast_to(batch.next_obs, (a.shape[0], *batch.next_obs.shape))
    q = next_q_fn(params, batch, obs_rep, a, config).T  # (B, n)
    idx = jnp.argmax(q, axis=-1)
    next_q = jnp.take_along_axis(q, idx[:, None], axis=-1)[:, 0]
    if config.backup_entropy:
        next_logp = jnp.take_along_axis(logp.T, idx[:, None], axis=-1)[:, 0]
        next_q = next_q - sac.temperature(params) * next_logp
    return batch.reward + config.gamma * (1.0 - batch.terminated) * next_q


@checked_loss
def conservative_critic_loss(params, batch: Transitions, key, config, policy_q_bound=None,
                             next_q_fn=sac.target_critic_q):
    """SAC TD loss + the CQL penalty (module docstring), summed over the ensemble.

    ``policy_q_bound(q, batch) -> q`` is applied to the Q values of the pi(s) and pi(s') samples
    before the importance correction (Cal-QL's lower bound; None for CQL). ``next_q_fn`` is the TD
    target's bootstrap term (:func:`td_target`).
    Key use: ``k_td, k_rand, k_pi, k_next = jax.random.split(key, 4)``.
    """
    k_td, k_rand, k_pi, k_next = jax.random.split(key, 4)
    n = config.cql_n_actions
    bsz, act_dim = batch.action.shape

    y = sg(td_target(params, batch, k_td, config, next_q_fn))

    a_rand = jax.random.uniform(k_rand, (n, bsz, act_dim), minval=-1.0, maxval=1.0)
    a_pi, logp_pi = policy_samples(config, act_dim, params["actor"], batch.obs, k_pi, n)
    a_next, logp_next = policy_samples(config, act_dim, params["actor"], batch.next_obs, k_next, n)
    a_pi, a_next = sg(a_pi), sg(a_next)
    logp_pi, logp_next = sg(logp_pi.T), sg(logp_next.T)  # (B, n)

    # All 3n + 1 actions at s in one critic pass: (3n + 1) * B rows per matmul instead of four
    # smaller passes (same numbers, higher throughput: docs/README.md, "Offline update throughput").
    actions = jnp.concatenate([batch.action[None], a_rand, a_pi, a_next], axis=0)
    q_all = q_at_samples(config, params["critic"], batch.obs, actions)  # (E, B, 3n + 1)
    q_data = q_all[..., 0]  # (E, B)
    q_rand, q_pi, q_next = jnp.split(q_all[..., 1:], 3, axis=-1)  # q_next: Q(s, a ~ pi(s'))
    td_loss = ((q_data - y[None]) ** 2).mean(axis=1).sum()
    info = {}
    if policy_q_bound is not None:
        q_pi, pi_info = policy_q_bound(q_pi, batch)
        q_next, next_info = policy_q_bound(q_next, batch)
        info.update({k: 0.5 * (pi_info[k] + next_info[k]) for k in pi_info})

    ood = cql_logsumexp(q_rand, q_pi, q_next, logp_pi, logp_next, act_dim, config.cql_temp)  # (E, B)
    diff = jnp.clip(ood - q_data, config.cql_clip_diff_min, config.cql_clip_diff_max).mean(axis=1)  # (E,)
    if config.cql_lagrange:
        penalty = alpha_prime(params) * config.cql_alpha * (diff - config.cql_target_action_gap)
    else:
        penalty = config.cql_alpha * diff
    loss = td_loss + penalty.sum()
    info.update(
        critic_loss=loss, td_loss=td_loss, cql_penalty=penalty.sum(), cql_diff=diff.mean(),
        cql_ood_q=ood.mean(), q_mean=q_data.mean(), target_mean=y.mean(),
        q_rand=q_rand.mean(), q_pi=q_pi.mean(), q_next_pi=q_next.mean(),
    )
    return loss, info


@checked_loss
def critic_loss(params, batch: Transitions, key, config, next_q_fn=sac.target_critic_q):
    """The CQL critic loss (no bound on the policy-action Q values)."""
    return conservative_critic_loss(params, batch, key, config, None, next_q_fn)


def alpha_prime_loss(params, cql_diff, config):
    """Lagrange dual loss -alpha' * cql_alpha * (mean_i diff_i - gap), ``cql_diff`` (the critic loss's
    ``cql_diff`` metric, mean over the ensemble) without gradient: alpha' grows while the penalty
    exceeds the target gap and shrinks towards 0 otherwise."""
    ap = alpha_prime(params)
    loss = -ap * config.cql_alpha * (sg(cql_diff) - config.cql_target_action_gap)
    return loss, {"alpha_prime": ap, "alpha_prime_loss": loss}


def cql_config(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Add the CQL fields (module docstring) to a SAC config."""
    cfg.backup_entropy = False  # no -T log pi(a'|s') in the TD target (the CQL / Cal-QL reference code)
    cfg.cql_alpha = 5.0  # weight alpha_cql of the conservative penalty, >= 0
    cfg.cql_n_actions = 10  # n: draws each of uniform, pi(.|s) and pi(.|s') actions (3n in the logsumexp), >= 1
    cfg.cql_temp = 1.0  # temperature T_c of the penalty's logsumexp, > 0
    # True: the Lagrange form, the penalty scaled by a learned alpha' that grows while it exceeds the gap
    cfg.cql_lagrange = False
    cfg.cql_target_action_gap = 1.0  # Lagrange form only: the target value of the penalty (the gap)
    cfg.cql_alpha_prime_init = 1.0  # Lagrange form only: alpha' at init, > 0
    cfg.cql_alpha_prime_lr = 3e-4  # Lagrange form only: learning rate of log alpha'
    cfg.cql_max_target_backup = False  # True: TD target = max over n policy samples of min_i Qbar_i(s', a')
    cfg.cql_clip_diff_min = -float("inf")  # per-sample lower clip of logsumexp - Q(s, a_D); -inf = none
    cfg.cql_clip_diff_max = float("inf")  # per-sample upper clip of logsumexp - Q(s, a_D); inf = none
    return cfg


@register("cql")
class CQL(sac.SAC):
    bounds = {"cql_alpha": at_least(0), "cql_n_actions": count(), "cql_temp": above(0),
              "cql_alpha_prime_init": above(0)}
    critic_loss_fn = staticmethod(critic_loss)

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        return cql_config(super().default_config())

    def __init__(self, config, obs_dim: int, act_dim: int):
        if config.cql_clip_diff_min > config.cql_clip_diff_max:  # inverted, the penalty would have no gradient
            raise ConfigError(f"{self.name}: cql_clip_diff_min={config.cql_clip_diff_min} must not exceed "
                              f"cql_clip_diff_max={config.cql_clip_diff_max}")
        super().__init__(config, obs_dim, act_dim)

    def optimizers(self):
        opts = super().optimizers()
        if self.config.cql_lagrange:
            opts["log_alpha_prime"] = make_optimizer(self.config, self.config.cql_alpha_prime_lr)
        return opts

    def init_params(self, key) -> dict:
        params = super().init_params(key)
        if self.config.cql_lagrange:
            params["log_alpha_prime"] = jnp.asarray(jnp.log(self.config.cql_alpha_prime_init), jnp.float32)
        return params

    def update_critic(self, state: TrainState, batch, key):
        """The critic step; with ``cql_lagrange`` also one dual step on alpha', using the penalty
        measured by that critic step's forward pass (before the critic moved)."""
        state, info = super().update_critic(state, batch, key)
        if not self.config.cql_lagrange:
            return state, info
        params, opt_state, ap_info = self.grad_step(
            "log_alpha_prime", lambda p, _b, _k, c: alpha_prime_loss(p, info["cql_diff"], c),
            state.params, state.opt_state, batch, key)
        return state.replace(params=params, opt_state=opt_state), {**info, **ap_info}

    def transfer(self, key, src_state: TrainState, src_learner):
        """The generic hand-over, plus alpha' when both sides run the Lagrange variant."""
        state = super().transfer(key, src_state, src_learner)
        if "log_alpha_prime" in state.params and "log_alpha_prime" in src_state.params:
            state = self.fresh_optimizer_state(
                state.replace(params={**state.params, "log_alpha_prime": src_state.params["log_alpha_prime"]})
            )
        return state
