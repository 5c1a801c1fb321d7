"""Hand-over: an online learner's initial parameters from another learner's (docs/algorithms.md,
"Hand-over"). ``Learner.transfer`` calls :func:`transfer_params`; a learner with its own rule
(ACA's aligned critic, SAMG's frozen offline copies) overrides ``transfer`` and reuses the pieces.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from smac_jax.errors import TransferError

#: Parameter groups copied from the offline learner at hand-over when both sides have them.
TRANSFERABLE = ("actor", "critic", "target_critic", "target_actor", "log_temp", "value", "target_value")


def transfer_params(fresh: dict, src: dict, src_learner: Any, dst_learner: Any) -> dict:
    """``fresh`` (the destination learner's freshly initialised groups) with every group of
    :data:`TRANSFERABLE` that both sides have taken from ``src``: the actor converted between
    kinds (:func:`convert_actor`), a missing target critic taken from the source's critic, and
    every copied group checked for the destination's shapes."""
    params = dict(fresh)
    pair = f"{src_learner.name} -> {dst_learner.name}"
    for group in TRANSFERABLE:
        if group not in params:
            continue
        if group in ("actor", "target_actor"):
            src_actor = src.get(group, src.get("actor"))
            if src_actor is None:
                raise TransferError(f"{pair}: {src_learner.name} has no actor")
            log_std_init = None
            if src_learner.actor_kind == "deterministic" and dst_learner.actor_kind == "gaussian":
                if "transfer_log_std_init" not in dst_learner.config:
                    raise TransferError(
                        f"{pair}: {dst_learner.name} has a Gaussian actor but no config field "
                        f"transfer_log_std_init, the log-std its actor starts from when it takes over the "
                        f"deterministic actor of {src_learner.name}; add it to {dst_learner.name}'s default_config")
                log_std_init = dst_learner.config.transfer_log_std_init
            params[group] = convert_actor(src_actor, src_learner.actor_kind, dst_learner.actor_kind,
                                          dst_learner.act_dim, log_std_init, pair)
        elif group == "target_critic" and "target_critic" not in src and "critic" in src:
            params[group] = src["critic"]
        elif group in src:
            params[group] = src[group]
        check_same_structure(fresh[group], params[group], group, src_learner.name, dst_learner.name)
    return params


def convert_actor(actor: Any, src_kind: str, dst_kind: str, act_dim: int, log_std_init: float | None, pair: str) -> Any:
    """Actor parameters of one kind as the other: a log-std head added (kernel 0, bias ``log_std_init``)
    for deterministic -> Gaussian, dropped for Gaussian -> deterministic (whose action is tanh(mean))."""
    p = dict(actor["params"])
    if src_kind == dst_kind:
        return actor
    if src_kind == "gaussian" and dst_kind == "deterministic":
        p.pop("log_std", None)
    elif src_kind == "deterministic" and dst_kind == "gaussian":
        hidden = p["mean"]["kernel"].shape[0]
        p["log_std"] = {
            "kernel": jnp.zeros((hidden, act_dim), p["mean"]["kernel"].dtype),
            "bias": jnp.full((act_dim,), log_std_init, p["mean"]["bias"].dtype),
        }
    else:
        raise TransferError(f"{pair}: cannot convert a {src_kind} actor to a {dst_kind} one")
    return {"params": p}


def check_same_structure(expected: Any, got: Any, group: str, src: str, dst: str) -> None:
    e_shapes = jax.tree.map(jnp.shape, expected)
    g_shapes = jax.tree.map(jnp.shape, got)
    if jax.tree.structure(e_shapes) != jax.tree.structure(g_shapes) or e_shapes != g_shapes:
        leaves = lambda t: {jax.tree_util.keystr(p): x for p, x in  # noqa: E731
                            jax.tree_util.tree_flatten_with_path(t, is_leaf=lambda x: isinstance(x, tuple))[0]}
        e, g = leaves(e_shapes), leaves(g_shapes)
        diff = [f"{k}: {dst} {e.get(k, 'absent')}, {src} {g.get(k, 'absent')}" for k in sorted(set(e) | set(g))
                if e.get(k) != g.get(k)]
        more = f" (and {len(diff) - 2} more)" if len(diff) > 2 else ""
        raise TransferError(
            f"{src} -> {dst}: parameter group {group!r} differs in shape: {'; '.join(diff[:2])}{more}. Use the same "
            "hidden_dims / num_critics / layer-norm settings on both sides."
        )


def same_params(a: Any, b: Any) -> bool:
    """Whether two parameter trees are the same: same structure, shapes and values (None: never)."""
    if a is None or b is None or jax.tree.structure(a) != jax.tree.structure(b):
        return False
    return all(x.shape == y.shape and bool(jnp.array_equal(x, y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def describe_transfer(src: dict, dst: dict) -> str:
    """What a hand-over did, group by group, from one lane's source and destination params: the
    groups taken over unchanged (from the group of the same name, or another of the same layout: the
    source's critic as a target critic it lacked, a frozen copy), those taken over and converted
    (an actor that changed kind, ACA's critic built from the source's baseline) and those
    initialised afresh. One line for the run's log."""
    def kernels(tree):  # weight matrices that are not all zero (a fresh bias or zero head matches anything)
        return [x for x in jax.tree.leaves(tree) if x.ndim >= 2 and bool(jnp.any(x != 0))]

    def shares_a_kernel(a, b) -> bool:  # a converted actor keeps its torso, ACA's critic the baseline's layers
        theirs = kernels(b)
        return any(any(x.shape == y.shape and bool(jnp.array_equal(x, y)) for y in theirs) for x in kernels(a))

    kept, converted, fresh = [], [], []
    for g in sorted(dst):
        # its own name, then any source group of its layout (a frozen copy: SAMG's offline critic, ACA's actor0)
        origin = [s for s in (g, {"target_critic": "critic", "target_actor": "actor"}.get(g)) if s in src]
        origin += [s for s in sorted(src) if s != g and jax.tree.structure(src[s]) == jax.tree.structure(dst[g])
                   and sum(x.size for x in jax.tree.leaves(dst[g])) > 1]
        if any(same_params(dst[g], src[s]) for s in origin):
            kept.append(g)
        elif any(shares_a_kernel(dst[g], src[s]) for s in src):
            converted.append(g)
        else:
            fresh.append(g)
    parts = [f"{label}: {', '.join(groups)}" for label, groups in
             (("taken over", kept), ("taken over and converted", converted), ("new", fresh)) if groups]
    return "; ".join(parts)
