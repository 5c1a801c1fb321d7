"""The offline-to-online pipeline end to end (``smac_jax.training.pipeline.run``) on a tiny real
Minari Pendulum dataset (tests/conftest.py): reproducibility, seed independence, resume after a
kill in either phase, SAC <-> TD3 hand-over, and the errors bad inputs give.

Runs are shared through module-scoped fixtures: ``run_a`` (the reference run), ``run_b`` (the
same config in another workdir) and ``run_c`` (the same config killed in the offline phase,
resumed, killed in the online phase, resumed to the end).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO_ROOT, script_env, tree_allclose

from smac_jax.data import replay
from smac_jax.data.dataset import DatasetError, load_dataset
from smac_jax.learners import ConfigError, make_learner
from smac_jax.training import phases, pipeline
from smac_jax.training.checkpoint import Checkpointer, CheckpointMismatchError
from smac_jax.training.pipeline import DivergenceError, run

OBS_DIM, ACT_DIM = 3, 1  # Pendulum-v1


class Killed(BaseException):
    """Stands in for the process being killed (not an Exception, so nothing catches it)."""


def to_numpy(tree):
    return jax.tree.map(lambda x: np.array(x), tree)


def read_rows(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def kill_after_save(mp, phase, step, record=None):
    """Make ``Checkpointer.save`` raise :class:`Killed` right after saving ``(phase, step)``."""
    orig = Checkpointer.save

    def save(self, ph, st, tree, meta=None):
        orig(self, ph, st, tree, meta)
        if (ph, st) == (phase, step):
            if record is not None:
                record["saved"] = to_numpy(tree)
            raise Killed(f"killed after saving {phase} checkpoint {step}")

    mp.setattr(Checkpointer, "save", save)


def run_quiet(config, workdir, resume=False):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        summary = run(config, workdir, resume=resume, progress=False)
    return summary, out.getvalue()


def offline_template(config):
    learner = make_learner(config.offline.learner, OBS_DIM, ACT_DIM, config.offline.agent)
    keys = jax.random.split(jax.random.PRNGKey(0), config.n_seeds)
    return learner, jax.eval_shape(jax.vmap(learner.init), keys)


def online_template(config):
    learner = make_learner(config.online.learner, OBS_DIM, ACT_DIM, config.online.agent)
    keys = jax.random.split(jax.random.PRNGKey(0), config.n_seeds)
    assert config.online.replay.init == "empty"
    buffers = jax.eval_shape(
        lambda: pipeline.stack_seeds(replay.empty_buffer(OBS_DIM, ACT_DIM, config.online.replay.capacity), config.n_seeds)
    )
    return learner, {"states": jax.eval_shape(jax.vmap(learner.init), keys), "buffers": buffers}


def restore(workdir, phase, step, template):
    root = os.path.join(workdir, "checkpoints")
    assert os.path.isdir(os.path.join(root, phase, str(step))), (phase, step, os.listdir(os.path.join(root, phase)))
    ck = Checkpointer(root)
    try:
        tree, meta = ck.restore(phase, template, step)
    finally:
        ck.close()
    assert meta["step"] == step
    return to_numpy(tree)


# ---------------------------------------------------------------------------------------------
# Shared runs
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_a(make_tiny_config, tmp_path_factory):
    """The reference run; also records the offline states the first update chunk receives."""
    config = make_tiny_config()
    workdir = str(tmp_path_factory.mktemp("run_a"))
    captured = {}
    orig = phases.make_offline_step

    def spy(learner, n):
        fn = orig(learner, n)

        def wrapped(states, data, keys, step):
            if "init" not in captured:
                captured["init"] = to_numpy(states)  # copied: the step donates its input
            return fn(states, data, keys, step)

        return wrapped

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(phases, "make_offline_step", spy)
        summary, _ = run_quiet(config, workdir)
    return dict(config=config, workdir=workdir, summary=summary, init=captured["init"])


@pytest.fixture(scope="module")
def run_b(make_tiny_config, tmp_path_factory):
    config = make_tiny_config()
    workdir = str(tmp_path_factory.mktemp("run_b"))
    summary, _ = run_quiet(config, workdir)
    return dict(config=config, workdir=workdir, summary=summary)


@pytest.fixture(scope="module")
def run_c(make_tiny_config, tmp_path_factory):
    """Killed after the offline checkpoint at step 100, resumed, killed after the online
    checkpoint at environment step 60, resumed to the end."""
    config = make_tiny_config()
    workdir = str(tmp_path_factory.mktemp("run_c"))
    out = dict(config=config, workdir=workdir)
    with pytest.MonkeyPatch.context() as mp:
        kill_after_save(mp, "offline", 100)
        with pytest.raises(Killed):
            run_quiet(config, workdir)
    out["rows_after_offline_kill"] = read_rows(workdir)

    record = {}
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        kill_after_save(mp, "online", 60, record)
        with pytest.raises(Killed), contextlib.redirect_stdout(stdout):
            run(config, workdir, resume=True, progress=False)
    out["stdout_offline_resume"] = stdout.getvalue()
    out["saved_online_60"] = record["saved"]
    out["rows_after_online_kill"] = read_rows(workdir)

    restored = {}
    orig_restore = Checkpointer.restore

    def spy_restore(self, phase, template, step=None):
        tree, meta = orig_restore(self, phase, template, step)
        restored[phase] = (to_numpy(tree), dict(meta))
        return tree, meta

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Checkpointer, "restore", spy_restore)
        out["summary"], out["stdout_online_resume"] = run_quiet(config, workdir, resume=True)
    out["restored"] = restored
    return out


# ---------------------------------------------------------------------------------------------
# Reproducibility and seeds
# ---------------------------------------------------------------------------------------------
def test_same_seed_same_config_identical_metrics(run_a, run_b):
    with open(os.path.join(run_a["workdir"], "metrics.jsonl")) as f:
        a = f.read()
    with open(os.path.join(run_b["workdir"], "metrics.jsonl")) as f:
        b = f.read()
    assert a == b
    rows = read_rows(run_a["workdir"])
    # 4 offline + 3 online (steps 0, 60, 120) evaluations, 2 seeds each.
    assert sorted({(r["phase"], r["step"]) for r in rows}) == sorted(
        [("offline", s) for s in (50, 100, 150, 200)] + [("online", s) for s in (0, 60, 120)]
    )
    assert len(rows) == 14
    assert run_a["summary"] == run_b["summary"]
    for name in ("summary.json", "config.json", "eval.png"):
        assert os.path.exists(os.path.join(run_a["workdir"], name)), name
    # the reference returns of the normalised scores, and where they come from (the test dataset's metadata)
    assert run_a["summary"]["score_reference"] == {"min": -400.0, "max": 0.0,
                                                   "source": f"dataset {run_a['config'].dataset.id} metadata"}
    for r in rows:  # every score from its return: 100 (R - min) / (max - min)
        assert r["eval_score"] == pytest.approx(100.0 * (r["eval_return"] + 400.0) / 400.0, rel=1e-6, abs=1e-6)


def test_reference_returns_given_in_the_config_replace_the_datasets(make_tiny_config, tmp_path):
    config = make_tiny_config(**{"ref_min_score": -1000.0, "ref_max_score": -100.0, "online.steps": 0})
    summary, _ = run_quiet(config, str(tmp_path / "run"))
    assert summary["score_reference"] == {"min": -1000.0, "max": -100.0, "source": "config"}
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl") if "eval_return" in line]
    assert rows
    for r in rows:
        assert r["eval_score"] == pytest.approx(100.0 * (r["eval_return"] + 1000.0) / 900.0, rel=1e-6, abs=1e-6)


def test_seeds_are_independent(run_a):
    init = run_a["init"]
    n_kernels = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(init.params)[0]:
        assert leaf.shape[0] == 2
        if str(getattr(path[-1], "key", "")) == "kernel":
            n_kernels += 1
            assert not np.allclose(leaf[0], leaf[1]), jax.tree_util.keystr(path)
    assert n_kernels > 0
    rows = read_rows(run_a["workdir"])
    by_step = {}
    for r in rows:
        by_step.setdefault((r["phase"], r["step"]), {})[r["seed"]] = r["eval_return"]
    for k, v in by_step.items():
        assert set(v) == {0, 1}, k
        assert v[0] != v[1], (k, v)  # distinct policies and evaluation episodes per seed


# ---------------------------------------------------------------------------------------------
# Resume
# ---------------------------------------------------------------------------------------------
def test_offline_kill_leaves_checkpoint_and_truncated_log(run_c):
    rows = run_c["rows_after_offline_kill"]
    assert {(r["phase"], r["step"]) for r in rows} == {("offline", 50), ("offline", 100)}
    assert "resumed offline phase at step 100" in run_c["stdout_offline_resume"]


def test_offline_resume_matches_uninterrupted(run_a, run_c):
    learner, template = offline_template(run_a["config"])
    ref = restore(run_a["workdir"], "offline", 200, template)
    got = restore(run_c["workdir"], "offline", 200, template)
    assert tree_allclose(ref.params, got.params, rtol=0, atol=1e-6)
    assert tree_allclose(ref.opt_state, got.opt_state, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got.step, [200, 200])
    # The offline log of the resumed run is the uninterrupted run's (evaluations included).
    off_a = [r for r in read_rows(run_a["workdir"]) if r["phase"] == "offline"]
    off_c = [r for r in run_c["rows_after_online_kill"] if r["phase"] == "offline"]
    assert [(r["step"], r["seed"]) for r in off_c] == [(r["step"], r["seed"]) for r in off_a]
    for ra, rc in zip(off_a, off_c):
        assert rc.keys() == ra.keys(), (ra["step"], ra["seed"])
        for k in ra:
            if isinstance(ra[k], (int, float)) and not isinstance(ra[k], bool):
                assert rc[k] == pytest.approx(ra[k], rel=1e-5, abs=1e-6), (ra["step"], ra["seed"], k)
            else:  # strings (the phase) and flags compare exactly
                assert rc[k] == ra[k], (ra["step"], ra["seed"], k)


def test_online_resume_continues_from_checkpoint(run_a, run_c):
    cfg = run_c["config"]
    assert "resumed online phase at environment step 60" in run_c["stdout_online_resume"]
    # What was restored is what was saved, and it is the state after 60 environment steps:
    # 60 inserts into an empty buffer, 60 - learning_starts updates.
    saved = run_c["saved_online_60"]
    restored, meta = run_c["restored"]["online"]
    assert meta["step"] == 60
    assert tree_allclose(saved, restored)
    np.testing.assert_array_equal(restored["buffers"].ptr, [60, 60])
    np.testing.assert_array_equal(restored["buffers"].size, [60, 60])
    np.testing.assert_array_equal(restored["states"].step, [60 - cfg.online.learning_starts] * 2)
    assert "offline" not in run_c["restored"]  # the offline phase is not redone

    # The run went on from step 60 to the end.
    _, template = online_template(cfg)
    final = restore(run_c["workdir"], "online", cfg.online.steps, template)
    np.testing.assert_array_equal(final["buffers"].size, [cfg.online.steps] * 2)
    np.testing.assert_array_equal(final["buffers"].ptr, [cfg.online.steps] * 2)
    np.testing.assert_array_equal(final["states"].step, [cfg.online.steps - cfg.online.learning_starts] * 2)
    np.testing.assert_array_equal(final["buffers"].data.reward[:, :60], saved["buffers"].data.reward[:, :60])

    rows = read_rows(run_c["workdir"])
    online = [(r["step"], r["seed"]) for r in rows if r["phase"] == "online"]
    assert online == [(0, 0), (0, 1), (60, 0), (60, 1), (120, 0), (120, 1)]  # no duplicates
    before = run_c["rows_after_online_kill"]
    assert rows[: len(before)] == before  # rows up to the checkpoint are kept as they were
    # Up to the kill, the online phase was the uninterrupted run's.
    on_a = [r for r in read_rows(run_a["workdir"]) if r["phase"] == "online" and r["step"] <= 60]
    assert [r for r in before if r["phase"] == "online"] == on_a
    assert os.path.exists(os.path.join(run_c["workdir"], "summary.json"))
    assert len(run_c["summary"]["online_final"]) == 2


def test_restoring_a_mismatched_checkpoint_names_the_checkpoint(tmp_path):
    """A checkpoint whose tree differs from the run's state (other config or version) gets an error
    that names the phase, step and directory, not orbax's tree dump."""
    ckpt = Checkpointer(str(tmp_path))
    ckpt.save("online", 7, {"buffers": {"rows": jnp.zeros((4, 3))}, "step": jnp.zeros(())}, {"step": 7})
    ckpt.restore("online", {"buffers": {"rows": jnp.ones((4, 3))}, "step": jnp.ones(())})  # same tree: fine
    for template in ({"buffers": {"obs": jnp.zeros((4, 3))}, "step": jnp.zeros(())},  # other structure
                     {"buffers": {"rows": jnp.zeros((8, 3))}, "step": jnp.zeros(())}):  # other shape
        with pytest.raises(CheckpointMismatchError, match=r"online checkpoint at step 7 in .*online does not match"):
            ckpt.restore("online", template)
    ckpt.close()


# ---------------------------------------------------------------------------------------------
# Hand-over between learners
# ---------------------------------------------------------------------------------------------
def check_handover(cfg, off_learner, off, on_learner, on):
    """The online learner's initial state (seed axis first) keeps the offline policy and critics."""
    np.testing.assert_array_equal(on.step, [0] * cfg.n_seeds)
    obs = np.asarray(load_dataset(cfg.dataset.id).transitions.obs[:64])
    key = jax.random.PRNGKey(0)
    actions = []
    for i in range(cfg.n_seeds):
        st_off = jax.tree.map(lambda x: x[i], off)
        st_on = jax.tree.map(lambda x: x[i], on)
        a_off = np.asarray(off_learner.act(st_off, obs, key, True))
        a_on = np.asarray(on_learner.act(st_on, obs, key, True))
        np.testing.assert_allclose(a_on, a_off, rtol=0, atol=1e-6)
        assert np.abs(a_off).max() > 1e-3
        actions.append(a_on)
        assert tree_allclose(st_on.params["critic"], st_off.params["critic"])
        assert tree_allclose(st_on.params["target_critic"], st_off.params["target_critic"])
        if on_learner.actor_kind == "deterministic":
            assert "log_std" not in st_on.params["actor"]["params"]
            assert tree_allclose(st_on.params["target_actor"], st_on.params["actor"])
        else:
            ls = st_on.params["actor"]["params"]["log_std"]
            np.testing.assert_array_equal(ls["kernel"], 0.0)
            np.testing.assert_array_equal(ls["bias"], cfg.online.agent.transfer_log_std_init)
            assert float(st_on.params["log_temp"]) == pytest.approx(np.log(cfg.online.agent.init_temperature))
        # Optimiser states are fresh (docs/algorithms.md, "Hand-over"): Adam's step counts are zero.
        counts = [np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(st_on.opt_state)[0]
                  if "count" in jax.tree_util.keystr(p)]
        assert counts and all((c == 0).all() for c in counts)
    assert not np.allclose(actions[0], actions[1])  # each seed hands over its own state


def test_handover_td3_to_sac_through_the_pipeline(make_tiny_config, tmp_path):
    cfg = make_tiny_config("td3", "sac", **{
        "offline.steps": 50, "offline.ckpt_every": 50,
        # No online update: the online checkpoint holds the transferred state.
        "online.steps": 10, "online.eval_every": 10, "online.ckpt_every": 10, "online.learning_starts": 10,
    })
    run_quiet(cfg, str(tmp_path))
    off_learner, off_t = offline_template(cfg)
    on_learner, on_t = online_template(cfg)
    off = restore(str(tmp_path), "offline", 50, off_t)
    on = restore(str(tmp_path), "online", 10, on_t)["states"]
    check_handover(cfg, off_learner, off, on_learner, on)
    # The online learner was evaluated right after hand-over, for both seeds.
    rows = [r for r in read_rows(str(tmp_path)) if r["phase"] == "online" and r["step"] == 0]
    assert len(rows) == 2


def test_a_dataset_without_reference_returns_is_announced_and_reports_no_drop(make_tiny_config, tmp_path, capsys,
                                                                             minari_store):
    """Without reference returns (a Minari DataCollector dataset's usual case) the run says at its
    start that it reports returns and no transfer drop, and the comparison table says so too."""
    import gymnasium as gym

    from smac_jax.analysis.compare import load_labelled, table
    from smac_jax.training.dataset_factory import random_episodes_dataset

    random_episodes_dataset(gym.make("Pendulum-v1", max_episode_steps=50), "test/pendulum/noref-v0", 4)
    cfg = make_tiny_config("td3", "sac", **{
        "dataset.id": "test/pendulum/noref-v0", "dataset.generate": False,
        "offline.steps": 50, "offline.ckpt_every": 50,
        "online.steps": 10, "online.eval_every": 10, "online.ckpt_every": 10, "online.learning_starts": 10,
    })
    capsys.readouterr()
    summary = run(cfg, str(tmp_path), progress=False)
    assert ("[smac_jax] warning: dataset 'test/pendulum/noref-v0' has no reference returns: evaluations report "
            "returns, not normalised scores, and no transfer drop is computed") in capsys.readouterr().out
    assert summary["metric"] == "eval_return" and "transfer_drop" not in summary
    rows = table(load_labelled(str(tmp_path))).splitlines()
    assert rows[2].endswith(" | - | - | - |") and "nan" not in rows[2]
    assert rows[-1].startswith("td3 -> sac: evaluation returns, not normalised scores (the dataset has no reference")


def test_handover_sac_to_td3_from_offline_checkpoint(run_a):
    """TD3.transfer on run A's restored end-of-offline SAC state (what the pipeline calls)."""
    cfg = run_a["config"]
    off_learner, off_t = offline_template(cfg)
    off = restore(run_a["workdir"], "offline", cfg.offline.steps, off_t)
    on_learner = make_learner("td3", OBS_DIM, ACT_DIM, {"hidden_dims": (32, 32), "batch_size": 32})
    keys = jax.random.split(jax.random.PRNGKey(1), cfg.n_seeds)
    on = to_numpy(jax.jit(jax.vmap(lambda k, s: on_learner.transfer(k, s, off_learner)))(keys, off))
    check_handover(cfg, off_learner, off, on_learner, on)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
def test_unknown_dataset_lists_local_datasets(make_tiny_config, tmp_path, pendulum_dataset_id):
    cfg = make_tiny_config(**{"dataset.id": "test/nope/missing-v0"})
    with pytest.raises(DatasetError) as e:
        run_quiet(cfg, str(tmp_path))
    msg = str(e.value)
    assert "test/nope/missing-v0" in msg and pendulum_dataset_id in msg and "Local datasets" in msg


def test_eval_every_not_multiple_of_scan_steps(make_tiny_config, tmp_path):
    cfg = make_tiny_config(**{"offline.eval_every": 70})
    with pytest.raises(ConfigError, match=r"offline\.eval_every=70 must be a multiple of offline\.scan_steps=50"):
        run_quiet(cfg, str(tmp_path))
    assert not os.path.exists(os.path.join(tmp_path, "metrics.jsonl"))  # failed before any work


def test_unknown_learner(make_tiny_config, tmp_path):
    cfg = make_tiny_config()
    cfg.online.learner = "no_such_learner"
    with pytest.raises(ConfigError, match=r"unknown learner 'no_such_learner'; available: .*sac.*td3"):
        run_quiet(cfg, str(tmp_path))


def test_unknown_hyperparameter(make_tiny_config, tmp_path):
    cfg = make_tiny_config()
    with pytest.raises(AttributeError, match="not_a_hyperparameter"):  # the task config is locked
        cfg.offline.agent.not_a_hyperparameter = 0.5
    cfg.unlock()  # a config built another way: the run's own check names the key
    cfg.offline.agent.not_a_hyperparameter = 0.5
    with pytest.raises(ConfigError, match=r"'not_a_hyperparameter' is not a hyperparameter of learner 'sac'"):
        run_quiet(cfg, str(tmp_path))


def test_divergence_names_metric_and_step(make_tiny_config, tmp_path):
    cfg = make_tiny_config(**{"dataset.reward_scale": 1e30, "offline.steps": 50, "offline.ckpt_every": 50})
    with pytest.raises(DivergenceError, match=r"metric '\w+' is not finite at step 50 for seed index\(es\) \[0, 1\]"):
        run_quiet(cfg, str(tmp_path))
    assert read_rows(str(tmp_path)) == []  # the failing evaluation wrote no rows


def test_cli_unknown_dataset_exit_code_2(pendulum_dataset_id, minari_store, tmp_path):
    env = script_env(MINARI_DATASETS_PATH=str(minari_store))
    proc = subprocess.run(
        [sys.executable, "experiments/o2o.py", "--config=configs/o2o.py:pendulum",
         "--config.dataset.id=test/nope/missing-v0", "--config.dataset.generate=False",
         f"--workdir={tmp_path / 'cli'}", "--noprogress"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    err_lines = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
    assert err_lines and "test/nope/missing-v0" in err_lines[0], proc.stderr[-2000:]
    assert pendulum_dataset_id in proc.stderr  # the local listing
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip() == ""  # no summary


def test_critic_warmup_holds_the_handed_over_policy(make_tiny_config, tmp_path):
    """online.critic_warmup=40 with learning_starts=20: at environment step 60 the actor and the
    temperature are still the offline run's last ones while the critic has trained; by step 120
    the actor has moved."""
    cfg = make_tiny_config(**{"online.critic_warmup": 40})
    wd = str(tmp_path / "run")
    run_quiet(cfg, wd)
    _, off_template = offline_template(cfg)
    offline = restore(wd, "offline", cfg.offline.steps, off_template)
    _, template = online_template(cfg)
    at_60 = restore(wd, "online", 60, template)["states"]
    at_120 = restore(wd, "online", 120, template)["states"]
    for g in ("actor", "log_temp"):
        assert tree_allclose(offline.params[g], at_60.params[g]), g
    assert not tree_allclose(offline.params["critic"], at_60.params["critic"], rtol=1e-6, atol=1e-6)
    assert not tree_allclose(at_60.params["actor"], at_120.params["actor"], rtol=1e-6, atol=1e-6)


def test_evaluation_logs_the_critics_value_against_the_discounted_return(run_a):
    """Every evaluation row of a learner with a critic carries q_start (min over the ensemble of
    Q(s0, pi(s0)) at the evaluation's start states), eval_discounted_return (sum_t gamma^t r_t of
    those episodes) and their difference; recomputed here with gymnasium and a float64 NumPy
    forward pass from the final offline checkpoint."""
    from np_reference import np_episode, np_gaussian, np_q

    from smac_jax.data.dataset import load_dataset_from_config

    config, workdir = run_a["config"], run_a["workdir"]
    step = config.offline.steps
    _, template = offline_template(config)
    states = restore(workdir, "offline", step, template)
    dataset = load_dataset_from_config(config.dataset)
    gamma, episodes = config.offline.agent.gamma, config.eval.episodes
    round_index = -(-step // config.offline.eval_every)
    rows = [r for r in read_rows(workdir) if r["phase"] == "offline" and r["step"] == step]
    assert len(rows) == config.n_seeds
    for i, row in enumerate(rows):
        actor = jax.tree.map(lambda x: x[i], states.params["actor"])
        critic = jax.tree.map(lambda x: x[i], states.params["critic"])
        qs, disc = [], []
        policy = lambda o: np.tanh(np_gaussian(actor, o[None])[0])[0]  # noqa: E731
        for e in range(episodes):
            env = dataset.make_env()
            obs, total = np_episode(env, policy, config.seed + 10_000 * (round_index + 1) + i * episodes + e, gamma,
                                    config.dataset.reward_scale, config.dataset.reward_bias)
            env.close()
            qs.append(np_q(critic, obs[None], policy(obs)[None]).min(0)[0])
            disc.append(total)
        assert row["q_start"] == pytest.approx(np.mean(qs), rel=1e-4, abs=1e-4)
        assert row["eval_discounted_return"] == pytest.approx(np.mean(disc), rel=1e-4)
        assert row["q_minus_return"] == pytest.approx(row["q_start"] - row["eval_discounted_return"], abs=1e-9)
    from smac_jax.training.logger import MetricsLog, diagnostic_panels

    titles = [t for t, _ in diagnostic_panels(MetricsLog(os.path.join(workdir, "metrics.jsonl")))]
    assert titles == ["Q(s0, pi(s0)) against the return obtained"]  # drawn under a SAC run's curve
