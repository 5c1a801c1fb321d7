"""experiments/profile_update.py: the per-category breakdown of a compiled update's traced operations."""
import importlib.util
import os
import sys

import jax
import jax.numpy as jnp
import pytest

from conftest import REPO_ROOT

EXPERIMENTS = os.path.join(REPO_ROOT, "experiments")


@pytest.fixture(scope="module")
def prof():
    sys.path.insert(0, EXPERIMENTS)
    spec = importlib.util.spec_from_file_location("_profile_update", os.path.join(EXPERIMENTS, "profile_update.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_hlo_ops_finds_fused_matmuls_and_scope_names(prof):
    def f(x, w):
        with jax.named_scope("optimizer"):
            y = jnp.tanh(x @ w) * 2.0
        return y.sum()

    text = jax.jit(f).lower(jnp.ones((64, 64)), jnp.ones((64, 64))).compile().as_text()
    module, ops = prof.hlo_ops(text)
    assert module.startswith("jit_f")
    cats = {name: prof.categorise(name, op) for name, op in ops.items()}
    assert "matmul" in cats.values()  # the dot (alone or inside a library fusion) is found
    scoped = [n for n, op in ops.items() if "optimizer" in op["op_name"] and not op["matmul"]]
    assert scoped and all(cats[n] == "optimizer" for n in scoped)


@pytest.mark.parametrize("layer_norm", [True, False])
def test_profile_attributes_a_learners_update(prof, layer_norm):
    from bench_data import fake_data  # on sys.path through the prof fixture

    data = fake_data(2_000)
    call, hlo = prof.ours("td3bc", {"hidden_dims": (16, 16), "batch_size": 32, "critic_layer_norm": layer_norm}, data, 2)
    r = prof.profile_program(call, 2, 8, hlo)
    ops = r["op_ms"]
    assert r["updates"] == 8 and r["unattributed_events"] == 0
    assert ops["matmul"] > 0 and ops["optimizer"] > 0 and ops["minibatch"] > 0
    assert (ops["layernorm"] > 0) == layer_norm  # LayerNorm's ops are found exactly when the critic has it
    assert abs(sum(r["op_share"].values()) - 1.0) < 1e-9
    assert 0 < r["matmul_wall_ms"] <= r["any_op_wall_ms"] <= r["traced_wall_ms"] * 1.05
    assert r["matmul_only_ceiling"] >= 1.0
