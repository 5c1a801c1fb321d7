"""Core pytree types shared by data, learners and training loops."""
from __future__ import annotations

from typing import Any

import flax.struct
import jax

PRNGKey = jax.Array
Params = Any
Metrics = dict[str, jax.Array]


@flax.struct.dataclass
class Transitions:
    """A batch (or a whole store) of transitions; every field has a leading row axis.

    obs, next_obs:  (N, obs_dim) float32, flattened (Dict spaces in the space's key order)
                    and standardised if the dataset was loaded with ``normalize_obs``.
    action:         (N, act_dim) float32 in [-1, 1].
    reward:         (N,) float32, after ``reward_scale`` / ``reward_bias``.
    terminated:     (N,) float32 in {0, 1}; the only flag that cuts bootstrapping.
    truncated:      (N,) float32 in {0, 1}; time-limit ends (do not cut bootstrapping).
    episode:        (N,) int32 episode index within the dataset (-1 for online data).
    rtg:            (N,) float32 undiscounted return-to-go of the raw reward, this step included.
    mc_return:      (N,) float32 discounted Monte-Carlo return of the (scaled) reward,
                    this step included (Cal-QL's lower bound).
    traj_return:    (N,) float32 total raw return of the transition's episode.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    episode: jax.Array
    rtg: jax.Array
    mc_return: jax.Array
    traj_return: jax.Array

    @property
    def size(self) -> int:
        return self.reward.shape[0]

    @classmethod
    def random(cls, key: jax.Array, n: int, obs_dim: int, act_dim: int) -> "Transitions":
        """A batch of ``n`` random transitions with every field in its documented range: standard
        normal observations and rewards, actions uniform in [-1, 1], about one step in ten
        terminated, episode indices, returns to go and Monte-Carlo returns as normal draws. For
        calling, differentiating and testing a loss on a fixed batch without a dataset."""
        import jax.numpy as jnp

        k = jax.random.split(key, 8)
        normal = lambda kk, *shape: jax.random.normal(kk, shape, jnp.float32)  # noqa: E731
        return cls(obs=normal(k[0], n, obs_dim), action=jax.random.uniform(k[1], (n, act_dim), jnp.float32, -1.0, 1.0),
                   reward=normal(k[2], n), next_obs=normal(k[3], n, obs_dim),
                   terminated=(jax.random.uniform(k[4], (n,)) < 0.1).astype(jnp.float32),
                   truncated=jnp.zeros(n, jnp.float32), episode=jax.random.randint(k[5], (n,), 0, max(n // 10, 1)),
                   rtg=normal(k[6], n), mc_return=normal(k[7], n), traj_return=normal(k[6], n) * 10.0)

    def check_shapes(self, obs_dim: int | None = None, act_dim: int | None = None, where: str = "batch") -> None:
        """Raise :class:`~smac_jax.errors.ShapeError` naming the field unless every field has the
        shape documented above (leading row axis N; ``obs_dim`` / ``act_dim`` checked when given).
        Shapes are static, so under ``jax.jit`` this costs nothing at run time."""
        from smac_jax.errors import ShapeError

        n = self.obs.shape[0] if self.obs.ndim else None
        rows = {"obs": obs_dim, "next_obs": obs_dim, "action": act_dim}  # (N, width): width checked if given
        for f in ("obs", "next_obs", "action", "reward", "terminated", "truncated", "episode", "rtg",
                  "mc_return", "traj_return"):
            got = tuple(getattr(self, f).shape)
            if f in rows:
                width = rows[f]
                ok = len(got) == 2 and got[0] == n and (width is None or got[1] == width)
                expected = f"(N, {width if width is not None else f.replace('next_', '') + '_dim'})"
            else:
                ok, expected = got == (n,), "(N,)"
            if not ok:
                raise ShapeError(f"{where}.{f} has shape {got}; expected {expected} with N = {n}, the rows of {where}.obs")
