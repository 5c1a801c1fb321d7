"""Multi-layer perceptrons and critic / value ensembles."""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

default_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")  # PyTorch's Linear init


class MLP(nn.Module):
    """Dense -> [LayerNorm] -> activation, repeated; the last layer is linear when ``out_dim`` is set."""

    hidden_dims: Sequence[int] = (256, 256)
    out_dim: int | None = None
    layer_norm: bool = False
    activation: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, h in enumerate(self.hidden_dims):
            x = nn.Dense(h, name=f"dense_{i}")(x)
            if self.layer_norm:
                x = nn.LayerNorm(name=f"ln_{i}")(x)
            x = self.activation(x)
        if self.out_dim is not None:
            x = nn.Dense(self.out_dim, name="out")(x)
        return x


class QNetwork(nn.Module):
    """Q(s, a) -> scalar."""

    hidden_dims: Sequence[int] = (256, 256)
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, action], axis=-1)
        return MLP(self.hidden_dims, 1, self.layer_norm, name="mlp")(x)[..., 0]


class ValueNetwork(nn.Module):
    """V(s) -> scalar."""

    hidden_dims: Sequence[int] = (256, 256)
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return MLP(self.hidden_dims, 1, self.layer_norm, name="mlp")(obs)[..., 0]


def ensemble(module_cls: type[nn.Module], num: int) -> type[nn.Module]:
    """An ensemble of ``num`` independent copies of ``module_cls`` (``nn.vmap`` over parameters).

    Inputs carry a leading ensemble axis (:func:`per_member`), outputs too; kernels are 3-D
    ``(E, in, out)``, biases ``(E, out)``.
    """
    return nn.vmap(
        module_cls,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        in_axes=0,
        out_axes=0,
        axis_size=num,
    )


def per_member(x: jax.Array, num: int) -> jax.Array:
    """``x`` with a leading ensemble axis of size ``num`` (a broadcast: every member sees the same input).

    Giving each member its own (broadcast) copy instead of sharing one unbatched input keeps every
    layer's activations in the ensemble-major layout of the batched matrix products: with a shared
    input XLA CPU merges the members' first layers into one product and then transposes its
    ``(rows, E x width)`` output and gradient, full-size copies that slowed CQL's update by about a tenth
    (docs/README.md, "Where an update's time goes"). The values are the same."""
    return jnp.broadcast_to(x, (num, *x.shape))


def members_one_by_one(module: nn.Module, member: nn.Module, name: str, *inputs: jax.Array) -> jax.Array:
    """Apply each member of the ensemble submodule ``name`` of ``module`` on its own (its slice of
    the stacked parameters through the unbatched ``member``), stacked: the same parameters and
    outputs as the batched ensemble, as ``num`` independent chains of matrix products instead of one
    batched product per layer. XLA CPU runs independent products side by side on its threads,
    which made 2-member critic updates faster on a 2-core CPU (docs/README.md, "Ensemble layout");
    3-, 4- and 10-member ensembles were not, and on accelerators one batched product is the better layout."""
    params = module.variables["params"][name]
    num = jax.tree.leaves(params)[0].shape[0]
    return jnp.stack([member.apply({"params": jax.tree.map(lambda p, i=i: p[i], params)}, *inputs) for i in range(num)])


class QEnsemble(nn.Module):
    """``num`` critics Q_i(s, a); returns shape (num, *batch). ``separate``: apply the members one
    by one (:func:`members_one_by_one`; same parameters, same outputs)."""

    num: int = 2
    hidden_dims: Sequence[int] = (256, 256)
    layer_norm: bool = False
    separate: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        net = ensemble(QNetwork, self.num)(self.hidden_dims, self.layer_norm, name="q")
        if self.separate and not self.is_initializing():
            return members_one_by_one(self, QNetwork(self.hidden_dims, self.layer_norm, parent=None), "q", obs, action)
        return net(per_member(obs, self.num), per_member(action, self.num))


class ValueEnsemble(nn.Module):
    """``num`` state values V_i(s); returns shape (num, *batch). ``separate``: as for :class:`QEnsemble`."""

    num: int = 1
    hidden_dims: Sequence[int] = (256, 256)
    layer_norm: bool = False
    separate: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        net = ensemble(ValueNetwork, self.num)(self.hidden_dims, self.layer_norm, name="v")
        if self.separate and not self.is_initializing():
            return members_one_by_one(self, ValueNetwork(self.hidden_dims, self.layer_norm, parent=None), "v", obs)
        return net(per_member(obs, self.num))
