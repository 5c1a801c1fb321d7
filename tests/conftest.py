"""Shared fixtures: a tiny real Minari dataset for Pendulum-v1 and tiny pipeline configs.

The dataset lives in a session temp dir that ``MINARI_DATASETS_PATH`` points at for the whole
session (minari reads the variable at every call, so tests that set it for a module, like
``tests/test_data.py``, temporarily shadow it and restore it afterwards).
"""
from __future__ import annotations

import importlib.util
import os
import tempfile

# The tests check what the programs compute, not how fast XLA's code runs: they compile hundreds of
# small programs and run most of them a few times, so LLVM's optimisation passes cost more than they
# save. Level 0 (set before JAX starts its backend; the launch scripts the tests run inherit it)
# cuts the compile time of the suite by about 40%; the one long training loop that runs slower at
# it is compiled at XLA's usual level in its test. SMAC_JAX_TEST_XLA_OPT_LEVEL picks the level,
# `default` keeps XLA's own. (Not combinable with XLA CPU's older fusion emitters,
# `--xla_cpu_use_fusion_emitters=false`: they halve the compile time, but at level 0 the dataset
# factory's SAC run produced NaN actions within a few updates; at levels 1-2 it did not.)
_OPT_LEVEL = os.environ.get("SMAC_JAX_TEST_XLA_OPT_LEVEL", "0")
if _OPT_LEVEL not in ("default", "0", "1", "2", "3"):
    raise SystemExit(f"SMAC_JAX_TEST_XLA_OPT_LEVEL must be 0, 1, 2, 3 or default, got {_OPT_LEVEL!r}")
if _OPT_LEVEL != "default" and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --xla_backend_optimization_level={_OPT_LEVEL}").strip()

import gymnasium as gym
import jax
import numpy as np
import pytest

from smac_jax.training.dataset_factory import random_episodes_dataset

# Many tests compile the same small programs (every tiny pipeline run builds its own closures):
# JAX's persistent compilation cache serves the repeats from disk, which cuts the suite's time
# (the executables are the same, so results are too). SMAC_JAX_TEST_XLA_CACHE=0 turns it off.
_CACHE = os.environ.get("SMAC_JAX_TEST_XLA_CACHE", os.path.join(tempfile.gettempdir(), "smac_jax_test_xla_cache"))
if _CACHE != "0":
    jax.config.update("jax_compilation_cache_dir", _CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    # the launch scripts the tests run as subprocesses read the same cache (JAX's environment variables)
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
else:  # and the launch scripts keep nothing in the user's cache either
    os.environ.setdefault("SMAC_JAX_XLA_CACHE", "0")

PENDULUM_ID = "test/pendulum/random-v0"
#: Episode length of the test dataset; it is stored in the dataset's env spec, so the
#: pipeline's evaluation and training environments use it as their time limit too.
PENDULUM_EPISODE_STEPS = 50
PENDULUM_EPISODES = 20
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def script_env(**extra: str) -> dict:
    """The environment for running a launch script in a subprocess: on the CPU, importing this
    checkout's ``smac_jax`` (not whichever copy an editable install points to), plus ``extra``."""
    path = os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=path, **extra)


def load_o2o_config_module():
    """``configs/o2o.py`` loaded from its path (``configs`` is not a package)."""
    spec = importlib.util.spec_from_file_location("_o2o_config", os.path.join(REPO_ROOT, "configs", "o2o.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def minari_store(tmp_path_factory):
    """A temporary Minari store that ``MINARI_DATASETS_PATH`` points at for the session."""
    root = tmp_path_factory.mktemp("minari_store")
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield root
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


@pytest.fixture(scope="session")
def pendulum_dataset_id(minari_store):
    """``test/pendulum/random-v0``: 20 uniform-random Pendulum-v1 episodes of 50 steps (1000 rows)."""
    random_episodes_dataset(
        gym.make("Pendulum-v1", max_episode_steps=PENDULUM_EPISODE_STEPS), PENDULUM_ID, PENDULUM_EPISODES,
        eval_env=gym.make("Pendulum-v1", max_episode_steps=PENDULUM_EPISODE_STEPS),
        ref_min_score=-400.0, ref_max_score=0.0, algorithm_name="uniform random",
        description="tiny random Pendulum dataset for smac_jax tests",
    )
    return PENDULUM_ID


def tiny_config(dataset_id: str = PENDULUM_ID, offline: str = "sac", online: str = "sac", **overrides):
    """``configs/o2o.py:pendulum`` with tiny budgets (validated by ``pipeline.validate_config``).

    Offline: 200 updates in scan chunks of 50, evaluated every 50, checkpointed every 100.
    Online: 120 environment steps, learning starts after 20, evaluated every 60, checkpointed
    every 60. Networks (32, 32), batch 32, 2 seeds, 1 evaluation episode of 50 steps.
    ``overrides`` are dotted keys, e.g. ``tiny_config(**{"offline.steps": 100})``.
    """
    c = load_o2o_config_module().get_config(f"pendulum,{offline},{online}")
    c.n_seeds = 2
    c.ckpt_keep = 10
    c.dataset.id = dataset_id
    c.dataset.generate = False
    c.offline.steps = 200
    c.offline.scan_steps = 50
    c.offline.eval_every = 50
    c.offline.ckpt_every = 100
    c.online.steps = 120
    c.online.eval_every = 60
    c.online.ckpt_every = 60
    c.online.learning_starts = 20
    c.online.replay.capacity = 1_000
    c.eval.episodes = 1
    for agent in (c.offline.agent, c.online.agent):
        agent.hidden_dims = (32, 32)
        agent.batch_size = 32
    for k, v in overrides.items():
        node = c
        *path, leaf = k.split(".")
        for p in path:
            node = node[p]
        node[leaf] = v
    return c


@pytest.fixture(scope="session")
def make_tiny_config(pendulum_dataset_id):
    """``tiny_config`` bound to the session's test dataset (which it creates first)."""

    def make(offline: str = "sac", online: str = "sac", **overrides):
        return tiny_config(pendulum_dataset_id, offline, online, **overrides)

    return make


def tree_allclose(a, b, rtol=0.0, atol=0.0) -> bool:
    import jax

    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    if jax.tree.structure(a) != jax.tree.structure(b) or len(la) != len(lb):
        return False
    return all(
        np.shape(x) == np.shape(y) and np.allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)
        for x, y in zip(la, lb)
    )


# SMAC_JAX_TEST_COMPILE_REPORT=DIR: every XLA compilation in the test processes (not in the launch
# scripts they run as subprocesses) is appended to DIR/compiles-<worker>.jsonl as
# {"test", "function", "seconds"}: where a run's time goes. With a filled compilation cache most
# entries are read-backs; run with SMAC_JAX_TEST_XLA_CACHE=0 or a fresh cache directory to time compiles.
_COMPILE_REPORT = os.environ.get("SMAC_JAX_TEST_COMPILE_REPORT")
_CURRENT_TEST = ["(collection)"]

if _COMPILE_REPORT:
    import json

    from jax import monitoring

    def _record_compile(event: str, duration: float, **kwargs) -> None:
        if event != "/jax/core/compile/backend_compile_duration":
            return
        os.makedirs(_COMPILE_REPORT, exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        with open(os.path.join(_COMPILE_REPORT, f"compiles-{worker}.jsonl"), "a") as f:
            f.write(json.dumps({"test": _CURRENT_TEST[0], "function": str(kwargs.get("fun_name", "?")),
                                "seconds": round(duration, 3)}) + "\n")

    monitoring.register_event_duration_secs_listener(_record_compile)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        _CURRENT_TEST[0] = item.nodeid
        yield


# `--dist loadfile` hands each worker a whole file as it becomes free, in collection order. The
# heaviest files go first, so the last file handed out is a short one and both workers finish
# together (alphabetically the heaviest file would come last and run alone).
_HEAVY_FILES_FIRST = (
    "test_vmap_sweep.py", "test_drop_analysis.py", "test_faults.py", "test_transfer_matrix.py",
    "test_online_loop.py", "test_pipeline.py", "test_sweep.py", "test_docs_python.py", "test_score_model.py",
    "test_networks.py",
)


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        name = item.path.name
        return _HEAVY_FILES_FIRST.index(name) if name in _HEAVY_FILES_FIRST else len(_HEAVY_FILES_FIRST)

    items.sort(key=rank)  # stable: a file's tests keep their order and stay together
