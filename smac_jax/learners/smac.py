"""SMAC: Score-Matched Actor-Critic (de Lara & Shkurti; docs/algorithms.md, SMAC).

Offline SAC whose critic loss carries a score-matching term,

    L_SMAC(theta, psi) = kappa * L_SM(theta, psi) + L_AC(theta),
    L_SM = E_{s~D, a~B(A)} sum_i || grad_a Q_theta_i(s, a) - alpha_psi(s) * score(s, a) ||^2,

where ``score(s, a)`` is the frozen, return-conditioned diffusion model's estimate of the
dataset's score (``smac_jax.score``), B(A) mixes policy and uniform actions 50/50, and
alpha_psi(s) >= 0 is a learned state-dependent scale trained jointly with the critic. That is the
paper's form (``sm_target="alpha_score"``); the default, ``"direction"``, matches only the
direction of grad_a Q to the score's (:func:`matching_loss`, docs/algorithms.md, SMAC). Trained
with Muon by default (docs/algorithms.md, "Optimiser"). The actor and temperature losses are SAC's, unchanged.

The frozen score network lives in ``params["score"]`` (never optimised, never handed over); the
learner gets it from :meth:`SMAC.prepare`, which loads a saved score model or trains one on the
dataset (see ``experiments/train_score_model.py``).
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections

from smac_jax import networks
from smac_jax.learners import sac
from smac_jax.learners.base import (Bound, ConfigError, LearnerConfig, TrainState, above, at_least, check_section,
                                    checked_loss, count, merge_section, register, sg)
from smac_jax.networks.mlp import MLP, QNetwork
from smac_jax.optim import make_optimizer
from smac_jax.score import model as score_model
from smac_jax.types import Transitions

ALPHA_PARAMS = ("softplus", "linear")
SM_TARGETS = ("alpha_score", "direction", "rotation")


def alpha_net(config) -> MLP:
    return MLP(tuple(config.hidden_dims), 1, False)


def alpha_value(params, obs, config) -> jax.Array:
    """alpha_psi(s): softplus(MLP_psi(s)) >= 0, or the raw linear output (``alpha_param``)."""
    raw = alpha_net(config).apply(params["alpha"], obs)[..., 0]
    if config.alpha_param == "softplus":
        return jax.nn.softplus(raw)
    if config.alpha_param == "linear":
        return raw
    raise ConfigError(f"alpha_param must be one of {ALPHA_PARAMS}, got {config.alpha_param!r}")


def action_gradients(critic_params, obs: jax.Array, action: jax.Array, config) -> jax.Array:
    """Per-sample action gradients grad_a Q_i(s, a) of every ensemble member: shape (E, B, |A|).

    ``jax.grad`` of the scalar Q_i(s, a) w.r.t. ``a``, inside ``jax.vmap`` over the batch and over
    the ensemble members (whose parameters carry a leading axis under ``nn.vmap``). Differentiable
    w.r.t. ``critic_params`` (the double backward of the score-matching loss).
    """
    member = QNetwork(tuple(config.hidden_dims), config.critic_layer_norm)
    members = critic_params["params"]["q"]

    def q_scalar(p, s, a):
        return member.apply({"params": p}, s, a)

    grad_a = jax.grad(q_scalar, argnums=2)
    per_batch = jax.vmap(grad_a, in_axes=(None, 0, 0))
    return jax.vmap(per_batch, in_axes=(0, None, None))(members, obs, action)


def sample_bA(params, obs: jax.Array, key, config) -> jax.Array:
    """B(A): per state, a~pi(.|s) (stop-gradient) with probability ``policy_prob``, else Uniform[-1, 1]^|A|."""
    act_dim = params["score"]["out"]["bias"].shape[-1]
    k_pi, k_u, k_m = jax.random.split(key, 3)
    a_pi = networks.gaussian_actor(config, act_dim).apply(params["actor"], obs).sample(seed=k_pi)
    a_u = jax.random.uniform(k_u, a_pi.shape, minval=-1.0, maxval=1.0)
    use_pi = jax.random.bernoulli(k_m, config.policy_prob, (obs.shape[0], 1))
    return sg(jnp.where(use_pi, a_pi, a_u))


def _norm(x: jax.Array) -> jax.Array:
    """||x|| over the last axis with a zero gradient at x = 0, where jnp.linalg.norm's is NaN (a ReLU
    critic's action gradient can be exactly zero); elsewhere jnp.linalg.norm, value and gradient."""
    nonzero = jnp.any(x != 0, axis=-1)
    return jnp.where(nonzero, jnp.linalg.norm(jnp.where(nonzero[..., None], x, 1.0), axis=-1), 0.0)


def matching_loss(g, score, alpha, sm_target: str, shrink: float = 1.0):
    """L_SM from the critics' action gradients ``g`` (E, B, A), the score (B, A) and alpha_psi (B,):
    mean over states of the sum over critics; returns (loss, cos(g, score) of shape (E, B)).

    * "alpha_score" (the paper): ||g - alpha score||^2.
    * "direction": ||g - sg(|g|) score / |score|||^2 = 2 |g|^2 (1 - cos). Its gradient has a part
      along g, 2 |g| (1 - cos), so descent also shrinks |g| (flattens Q in the actions); ``shrink``
      in [0, 1] scales that part (1: the full target; 0: the same as "rotation"), the value and the
      part orthogonal to g stay as they are.
    * "rotation": 2 sg(|g|^2) (1 - cos): the same value, a gradient orthogonal to g (only the angle
      is trained).

    Where a critic's action gradient is exactly zero its cosine is 0 and its gradient finite."""
    # only g's norm needs _norm: the score is a constant and the norm in "direction" is stop-gradient
    cos = jnp.sum(g * score[None], -1) / (_norm(g) * jnp.linalg.norm(score, axis=-1)[None] + 1e-8)
    if sm_target == "alpha_score":
        per = jnp.sum((g - alpha[None, :, None] * score[None]) ** 2, -1)
    else:
        # rotation's value equals direction's, and their gradients differ only along g, so
        # rotation + shrink * (direction - rotation) keeps the value and scales that part.
        per = 2.0 * sg(jnp.sum(g**2, -1)) * (1.0 - cos)
        if sm_target == "direction":
            unit = score / (jnp.linalg.norm(score, axis=-1, keepdims=True) + 1e-8)
            direction = jnp.sum((g - sg(jnp.linalg.norm(g, axis=-1, keepdims=True)) * unit[None]) ** 2, -1)
            per = per + shrink * (direction - per)
    return jnp.sum(per, axis=0).mean(), cos


@checked_loss
def score_matching_loss(params, batch: Transitions, key, config, match_fn=None):
    """L_SM: mean over states of sum_i of a per-member matching term, a ~ B(A), whose form is
    ``config.sm_target`` (:func:`matching_loss`): with ``"alpha_score"`` (the paper's form)
    || grad_a Q_i(s, a) - alpha_psi(s) score(s, a) ||^2; with ``"direction"`` (the default) and
    ``"rotation"`` only the direction of grad_a Q_i is pulled toward the score's, its norm kept.

    Differentiable w.r.t. ``params["critic"]`` (theta); w.r.t. ``params["alpha"]`` (psi) only with
    ``"alpha_score"`` (the other two forms do not use alpha_psi, so its gradient is zero and the
    reported ``alpha_mean`` stays at its initial value). The score network and the sampled actions are
    constants. The expectation is estimated on the first ``sm_batch_size`` states of the (uniformly
    sampled) batch; 0 means all of them.

    ``match_fn(g, score, alpha, config) -> (loss, cos)`` replaces :func:`matching_loss` (a variant
    of the matching term: ``g`` (E, B, A), ``score`` (B, A), ``alpha`` (B,); ``cos`` (E, B) is
    reported as ``grad_q_score_cos``).
    """
    obs = batch.obs[: config.sm_batch_size] if config.sm_batch_size else batch.obs
    a = sample_bA(params, obs, key, config)
    target = sg(score_model.score(params["score"], obs, a, config.score_w, config.score_config))
    g = action_gradients(params["critic"], obs, a, config)  # (E, B, A)
    alpha = alpha_value(params, obs, config)  # (B,)
    if match_fn is None:
        loss, cos = matching_loss(g, target, alpha, config.sm_target, config.sm_shrink)
    else:
        loss, cos = match_fn(g, target, alpha, config)
    return loss, {
        "sm_loss": loss,
        "alpha_mean": alpha.mean(),
        "grad_q_norm": jnp.linalg.norm(g, axis=-1).mean(),
        "score_norm": jnp.linalg.norm(target, axis=-1).mean(),
        "grad_q_score_cos": cos.mean(),
    }


@checked_loss
def critic_loss(params, batch: Transitions, key, config, match_fn=None):
    """L_SMAC = L_AC (SAC's TD loss) + kappa * L_SM (``match_fn``: see :func:`score_matching_loss`)."""
    k_td, k_sm = jax.random.split(key)
    l_ac, info = sac.critic_loss(params, batch, k_td, config)
    l_sm, sm_info = score_matching_loss(params, batch, k_sm, config, match_fn)
    loss = l_ac + config.kappa * l_sm
    # Q against the data's discounted Monte-Carlo return, over the rows that have one (online rows
    # carry -inf: no return known); 0 when the batch has none.
    has_mc = jnp.isfinite(batch.mc_return)
    mc = jnp.where(has_mc, batch.mc_return, 0.0).sum() / jnp.maximum(has_mc.sum(), 1)
    return loss, {**info, **sm_info, "smac_critic_loss": loss, "mc_return_mean": mc, "q_minus_mc": info["q_mean"] - mc}


#: Ranges of the score model's fields (``score_config``), checked when the learner is built.
SCORE_CONFIG_BOUNDS = {
    "T": count(), "beta_min": above(0), "beta_max": above(0), "hidden_dim": count(), "n_blocks": count(),
    "dropout": Bound(0, 1, hi_open=True), "time_dim": count(), "time_mlp_dim": count(), "fourier_init_std": above(0),
    "lr": above(0), "ema": Bound(0, 1, lo_open=True), "batch_size": count(), "steps": count(),
    "score_w": Bound(0, 1), "sample_clip": above(0),
}


@register("smac")
class SMAC(sac.SAC):
    bounds = {"kappa": at_least(0), "policy_prob": Bound(0, 1), "score_w": Bound(0, 1),
              "sm_batch_size": count(0), "sm_shrink": Bound(0, 1)}
    critic_loss_fn = staticmethod(critic_loss)

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        cfg = sac.SAC.default_config()
        cfg.optimizer = "muon"  # "adam" | "muon"; Muon on the kernels muon_scope picks (docs/algorithms.md)
        cfg.kappa = 1.0  # weight of the score-matching term L_SM in the critic loss, >= 0
        cfg.policy_prob = 0.5  # share of L_SM's actions drawn from pi(.|s); the rest uniform on [-1, 1]^|A|
        # States per step in the L_SM Monte-Carlo estimate (0 = the whole batch). Decision: 64, so a
        # SMAC update stays within about 2x a SAC update; the IDQL score network's forward pass alone
        # costs more than a whole SAC update at 256 states (docs/README.md, "Offline update throughput").
        cfg.sm_batch_size = 64
        cfg.alpha_param = "softplus"  # "softplus" (alpha >= 0) | "linear" (unconstrained)
        # What grad_a Q is matched to: "direction" = the score's direction at grad_a Q's own
        # (stop-gradient) magnitude, ||g - sg(|g|) score/|score|||^2 = 2 |g|^2 (1 - cos); "rotation" =
        # the same value with only the angle trained (its gradient never shrinks |g|); "alpha_score" =
        # alpha_psi(s) * score (the paper's L_SM). Decision: "direction", measured on four generated
        # datasets at 20k updates (docs/algorithms.md, SMAC).
        cfg.sm_target = "direction"
        # "direction" only: the weight in [0, 1] of the part of L_SM's gradient along grad_a Q (the
        # part that shrinks |grad_a Q|); 1 = the full target, 0 = "rotation". Decision: 0.3, which
        # kept the critic calibrated and the Walker2d policy from collapsing over 60k updates and
        # raised the 20k-update score on Hopper, Walker2d and Pendulum (docs/algorithms.md, SMAC).
        cfg.sm_shrink = 0.3
        cfg.alpha_lr = 3e-4  # learning rate of the alpha_psi(s) network (it matters with sm_target "alpha_score" only)
        cfg.score_w = 1.0  # return conditioning w of the score queries, in [0, 1] (1 = the best trajectories)
        # The score model: where to load it from / save it to ("" = <workdir>/score_model), and
        # how to train it when it is missing (docs/algorithms.md, SMAC; ``steps`` is the budget).
        cfg.score_model_path = ""
        # smac_jax.score.model's fields; SMAC queries the score with its own score_w (the section's
        # score_w, sample_noise and sample_clip serve sampling from the model, which SMAC does not do)
        cfg.score_config = score_model.default_score_config()
        cfg.score_config.steps = 50_000  # the score model's Adam steps when SMAC fits it
        return cfg

    def __init__(self, config, obs_dim, act_dim):
        super().__init__(config, obs_dim, act_dim)
        if config.alpha_param not in ALPHA_PARAMS:
            raise ConfigError(f"alpha_param must be one of {ALPHA_PARAMS}, got {config.alpha_param!r}")
        if config.sm_target not in SM_TARGETS:
            raise ConfigError(f"sm_target must be one of {SM_TARGETS}, got {config.sm_target!r}")
        # a partial ``score_config`` override (e.g. {"steps": 1000}) keeps the other defaults
        config.score_config = sc = merge_section(self.name, "score_config", config.score_config,
                                                 type(self).default_config().score_config)
        check_section(self.name, "score_config", sc, SCORE_CONFIG_BOUNDS,
                      {"score_sign": score_model.SCORE_SIGNS, "sample_noise": score_model.SAMPLE_NOISES})
        if sc.beta_max <= sc.beta_min:
            raise ConfigError(f"learner {self.name!r}: score_config.beta_max={sc.beta_max} must be above "
                              f"score_config.beta_min={sc.beta_min}")
        self.score_params = None

    # -- the score model ------------------------------------------------------------------
    def prepare(self, dataset, workdir: str, progress: bool = True) -> None:
        """Load the score model from ``score_model_path`` (or ``<workdir>/score_model``), training
        and saving it on ``dataset`` first if it does not exist."""
        from smac_jax.score.train import fit_or_load_score_model

        path = self.config.score_model_path or os.path.join(workdir, "score_model")
        params, score_cfg = fit_or_load_score_model(path, dataset, self.config.score_config, progress=progress)
        # Query-time switches stay the learner's: its score_w / score_sign win over the saved ones.
        score_cfg.score_w = self.config.score_w
        score_cfg.score_sign = self.config.score_config.score_sign
        self._use_score_config(score_cfg)
        self.score_params = params

    def param_groups(self) -> set[str]:
        """SAC's groups, the alpha network and the score model (known before the score model is)."""
        return set(jax.eval_shape(lambda k: super(SMAC, self).init_params(k), jax.random.PRNGKey(0))) | {"alpha", "score"}

    def check_start(self, dataset, source=None) -> None:
        """A score model at ``score_model_path`` fitted on other data or with another score config
        is refused before the run writes anything."""
        from smac_jax.score.train import check_saved_score_model

        if self.config.score_model_path:
            check_saved_score_model(self.config.score_model_path, dataset, self.config.score_config)

    def stand_in_models(self) -> None:
        """An unfitted score network of the configured shapes (zeros), for the start checks."""
        from smac_jax.score.model import init_score_model

        shapes = jax.eval_shape(lambda k: init_score_model(k, self.obs_dim, self.act_dim,
                                                           self.config.score_config).ema_params, jax.random.PRNGKey(0))
        self.score_params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def set_score_params(self, params, score_config=None) -> None:
        """Use an already-trained score network (EMA parameters), e.g. in a notebook."""
        self.score_params = params
        if score_config is not None:
            self._use_score_config(score_config)

    def _use_score_config(self, score_config) -> None:
        """The learner's config from now on: a copy with ``score_config`` replaced (the config the
        learner was built from, which a caller may hold, is left as it was)."""
        cfg = self.config.copy_and_resolve_references()  # a mutable copy
        cfg.score_config = score_config
        self.config = LearnerConfig(cfg) if isinstance(self.config, LearnerConfig) else cfg

    def optimizers(self):
        opts = super().optimizers()
        opts["alpha"] = make_optimizer(self.config, self.config.alpha_lr)
        return opts

    def init_params(self, key) -> dict:
        if self.score_params is None:
            raise ConfigError("SMAC needs its score model: call learner.prepare(dataset, workdir) "
                              "(the pipeline does) or learner.set_score_params(params) first")
        k_sac, k_alpha = jax.random.split(key)
        params = super().init_params(k_sac)
        params["alpha"] = alpha_net(self.config).init(k_alpha, jnp.zeros((1, self.obs_dim)))
        params["score"] = self.score_params
        return params

    def update_critic(self, state: TrainState, batch, key):
        """One joint step on (theta, psi) = (critic, alpha) of L_SMAC."""
        params, opt_state, info = self.grad_step(("critic", "alpha"), self.critic_loss_fn, state.params,
                                                 state.opt_state, batch, key)
        return state.replace(params=params, opt_state=opt_state), info
