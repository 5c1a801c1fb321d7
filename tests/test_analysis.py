"""Analysis instruments: run metrics and their aggregates (smac_jax.analysis.metrics), policy
landscapes (smac_jax.analysis.landscape) and the experiments/landscape.py command line.

Known answers are worked out by hand in the comments; the batched evaluator is checked against
evaluating each point on its own and against a plain one-environment loop.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO_ROOT, script_env, tiny_config

from smac_jax.analysis import landscape as ls
from smac_jax.analysis import metrics
from smac_jax.envs import make_env
from smac_jax.learners import TrainState, make_learner
from smac_jax.training.checkpoint import Checkpointer


# ------------------------------------------------------------------------------------ metrics
def test_transfer_drop_on_hand_made_curves():
    steps = [0, 50, 100, 150, 1000]
    # online phase of 1000 steps: the first 10% are steps <= 100 -> scores 45, 30, 48 -> min 30
    assert metrics.transfer_drop(50.0, steps, [45.0, 30.0, 48.0, 5.0, 90.0], 1000) == pytest.approx(20.0)
    # the dip at step 150 is outside the window; an online start above S_off is no drop
    assert metrics.transfer_drop(50.0, steps, [55.0, 60.0, 70.0, 5.0, 90.0], 1000) == 0.0
    with pytest.raises(ValueError, match="first"):
        metrics.transfer_drop(50.0, [500, 1000], [1.0, 2.0], 1000)


def test_drop_window_warning_when_no_update_precedes_an_evaluation_in_the_window():
    from smac_jax.training.summary import drop_window_warning

    # 20k online steps, learning from step 1000, evaluations every 2000: step 2000 is in the window
    assert drop_window_warning([0, 2000, 4000], 20_000, 1_000) is None
    # 4000 online steps: the window is the first 400 steps, before learning starts
    msg = drop_window_warning(range(0, 4001, 500), 4_000, 1_000)
    assert msg.startswith("no online evaluation after learning starts (step 1000) falls in the drop's window "
                          "(the first 400 steps)")
    # an evaluation at exactly learning_starts has seen no update
    assert drop_window_warning([0, 1000], 10_000, 1_000) is not None
    assert drop_window_warning([0], 0, 1_000) is None  # no online phase (a pretrain): nothing to warn about
    assert drop_window_warning([0, 500], 1_000, 1_000) is None  # an online phase without updates


def test_a_run_without_online_updates_says_what_its_drop_measures(tmp_path):
    """online.steps <= learning_starts (a pretrain, or learning never started): the drop compares the
    handed-over policy's evaluations with the offline ones, which the summary says in a note."""
    from conftest import tiny_config
    from smac_jax.training.logger import MetricsLog
    from smac_jax.training.summary import summarize

    log = MetricsLog(str(tmp_path / "metrics.jsonl"))
    log.write([{"phase": "offline", "step": 100, "seed": 0, "eval_score": 60.0, "eval_return": -600.0},
               {"phase": "online", "step": 0, "seed": 0, "eval_score": 50.0, "eval_return": -700.0}])
    for steps, note in ((0, True), (1_000, True), (5_000, False)):
        config = tiny_config(**{"online.steps": steps, "online.learning_starts": 1_000, "n_seeds": 1})
        out = summarize(log, config, score_available=True)
        assert out["transfer_drop"] == [10.0]
        assert ("no online update ran" in out.get("transfer_drop_note", "")) == note, steps


def test_standard_errors_use_the_sample_deviation_and_unmeasured_drops_are_marked():
    """Tables and curves report mean +- the standard error of the mean: the sample standard
    deviation (ddof=1) over seeds / sqrt(seeds), not the population one, which is sqrt(n / (n - 1))
    smaller; a drop the run itself flagged as unmeasured (transfer_drop_warning) is marked."""
    from smac_jax.analysis.compare import table
    from smac_jax.training.logger import standard_error

    x = np.array([[4.23, 1.0], [-9.42, 3.0], [np.nan, 5.0]])
    np.testing.assert_allclose(standard_error(x, 0), [np.std([4.23, -9.42], ddof=1) / np.sqrt(2), 2 / np.sqrt(3)])
    assert standard_error(np.array([7.0])) == 0.0
    runs = {"a -> sac": {"summary": {"metric": "eval_score", "offline_final": [4.23, -9.42], "online_final": [1.0, 2.0],
                                     "transfer_drop": [0.1, 0.0], "transfer_drop_warning": "no online evaluation"}},
            "b -> sac": {"summary": {"metric": "eval_score", "offline_final": [1.0, 2.0], "online_final": [1.0, 2.0],
                                     "transfer_drop": [6.0, 0.0]}}}
    rows = table(runs).splitlines()
    assert rows[2] == "| a -> sac | -2.6 ± 6.8 | 1.5 ± 0.5 | 0.1, 0.0 † | 0.1 † | 2/2 † |"
    assert rows[3] == "| b -> sac | 1.5 ± 0.5 | 1.5 ± 0.5 | 6.0, 0.0 | 3.0 | 1/2 |"
    assert rows[-1].startswith("† a -> sac: no online evaluation after the first online update falls in the drop's")


def test_normalized_regret_and_run_regrets_on_hand_made_curves():
    scores = {
        # env A: min 0, max 10 over both methods
        "A": {"m1": np.array([[0.0, 10.0], [10.0, 10.0]]),  # seed regrets: mean(1, 0) = 0.5 and 0
              "m2": np.array([[5.0, 5.0], [0.0, 0.0]])},  # 0.5 and 1
        # env B: min 100, max 200
        "B": {"m1": np.array([[200.0, 200.0], [150.0, 150.0]]),  # 0 and 0.5
              "m2": np.array([[100.0, 200.0], [100.0, 100.0]])},  # 0.5 and 1
    }
    per_run = metrics.run_regrets(scores)
    np.testing.assert_allclose(per_run["m1"], [[0.5, 0.0], [0.0, 0.5]])
    np.testing.assert_allclose(per_run["m2"], [[0.5, 0.5], [1.0, 1.0]])
    # mean over seeds, then environments: m1 (0.25 + 0.25) / 2, m2 (0.75 + 0.75) / 2
    assert metrics.normalized_regret(scores) == pytest.approx({"m1": 0.25, "m2": 0.75})


def test_corl_regret():
    assert metrics.corl_regret([True, False, True, True]) == pytest.approx(0.25)
    np.testing.assert_allclose(metrics.corl_regret([[1, 1, 0, 0], [0, 0, 0, 0]]), [0.5, 1.0])
    assert metrics.corl_regret([0.5, 1.0]) == pytest.approx(0.25)  # success rates
    for bad in ([], [1.5], [np.nan]):
        with pytest.raises(ValueError):
            metrics.corl_regret(bad)


def test_aggregate_matches_rliable_called_directly():
    from rliable import library as rly
    from rliable import metrics as rly_metrics

    rng = np.random.default_rng(0)
    scores = {"a": rng.normal(50, 10, (5, 3)), "b": rng.normal(60, 5, (7, 3))}
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    got = metrics.aggregate(scores, reps=300, seed=3)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # the global RNG is left alone
    # rliable resamples with numpy's global RNG: seeded as aggregate(seed=3) seeds it
    np.random.seed(3)
    points, cis = rly.get_interval_estimates(
        scores, lambda x: np.array([rly_metrics.aggregate_iqm(x), rly_metrics.aggregate_mean(x)]), reps=300)
    for k in scores:
        for i, stat in enumerate(("iqm", "mean")):
            iv = got[k][stat]
            assert (iv.point, iv.low, iv.high) == pytest.approx((points[k][i], cis[k][0, i], cis[k][1, i]), rel=1e-12)
            assert iv.low <= iv.point <= iv.high
    other = metrics.aggregate(scores, reps=300, seed=4)["a"]["iqm"]
    assert other.low != got["a"]["iqm"].low  # another seed, other replicates
    # IQM by hand: the middle half of 1..8 is 3, 4, 5, 6 -> 4.5, and an outlier does not move it
    assert metrics.aggregate(np.arange(1.0, 9.0), reps=50)["scores"]["iqm"].point == pytest.approx(4.5)
    assert metrics.aggregate(np.r_[np.arange(1.0, 8.0), 1e6], reps=50)["scores"]["iqm"].point == pytest.approx(4.5)
    # regret: the aggregate of the per-run regret matrix
    scores_env = {"A": {"m": np.array([[0.0, 10.0], [10.0, 10.0], [5.0, 5.0]])}}
    reg = metrics.aggregate_regret(scores_env, reps=50)["m"]["mean"]
    assert reg.point == pytest.approx(np.mean([0.5, 0.0, 0.5]))


# ------------------------------------------------------------------------------------ landscapes
def _random_params(seed, shapes=((3, 8), (8,), (8, 2))):
    rng = np.random.default_rng(seed)
    return {"params": {f"w{i}": rng.standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)}}


def _assert_tree_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_interpolation_endpoints_are_exact():
    a, b = _random_params(0), _random_params(1)
    _assert_tree_equal(ls.interpolate(a, b, 0.0), a)
    _assert_tree_equal(ls.interpolate(a, b, 1.0), b)
    grid = ls.interpolate(a, b, np.linspace(0.0, 1.0, 5))
    assert ls.stack_size(grid) == 5
    _assert_tree_equal(ls.take(grid, 0), a)
    _assert_tree_equal(ls.take(grid, 4), b)
    mid = jax.tree.map(lambda x, y: (x + y) / 2, a, b)
    for x, y in zip(jax.tree.leaves(ls.take(grid, 2)), jax.tree.leaves(mid)):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6)


def test_plane_coordinates_of_the_three_checkpoints():
    theta, tu, tv = (_random_params(i) for i in range(3))
    np.testing.assert_allclose(ls.plane_coordinates(theta, tu, tv, theta), [0, 0], atol=1e-9)
    np.testing.assert_allclose(ls.plane_coordinates(theta, tu, tv, tu), [1, 0], atol=1e-9)
    np.testing.assert_allclose(ls.plane_coordinates(theta, tu, tv, tv), [0, 1], atol=1e-9)
    # the grid: exact at the checkpoints, and point k sits at (xs[k % nx], ys[k // nx])
    xs, ys = np.array([-0.5, 0.0, 1.0]), np.array([0.0, 1.0])
    grid = ls.plane(theta, tu, tv, xs, ys)
    assert ls.stack_size(grid) == 6
    _assert_tree_equal(ls.take(grid, 1), theta)
    _assert_tree_equal(ls.take(grid, 2), tu)
    _assert_tree_equal(ls.take(grid, 4), tv)
    xy, residual = ls.plane_coordinates(theta, tu, tv, ls.take(grid, 3), return_residual=True)
    np.testing.assert_allclose(xy, [-0.5, 1.0], atol=1e-6)
    assert residual < 1e-6
    off_plane = jax.tree.map(lambda x: x + 1.0, theta)
    assert ls.plane_coordinates(theta, tu, tv, off_plane, return_residual=True)[1] > 0.1
    with pytest.raises(ValueError, match="linearly dependent"):
        ls.plane_coordinates(theta, tu, tu, tv)


def test_largest_drop_and_verdict_on_hand_made_curves():
    assert ls.largest_drop([1.0, 2.0, 3.0]) == 0.0  # never below an earlier value
    assert ls.largest_drop([3.0, 2.0, 1.0]) == 2.0
    assert ls.largest_drop([0.0, 5.0, 1.0, 4.0, 0.5]) == 4.5  # 5 then 0.5
    assert ls.largest_drop([5.0, 1.0, 6.0, 0.0]) == 6.0  # the later peak counts
    np.testing.assert_array_equal(ls.largest_drop([[1.0, 0.0], [0.0, 1.0]]), [1.0, 0.0])
    # two samples m - 1, m + 1 per point: s.e. = std_ddof1 / sqrt(2) = 1, threshold 2 x 1
    def samples(means):
        return np.stack([np.asarray(means) - 1, np.asarray(means) + 1], axis=1)

    v = ls.connectivity(samples([0.0, 0.0, -1.5, 0.0]))
    assert (v.drop, v.pooled_se, v.threshold, v.connected) == pytest.approx((1.5, 1.0, 2.0, True))
    v = ls.connectivity(samples([1.0, 3.0, 0.5, 2.0]))
    assert (v.drop, v.peak_index, v.dip_index, v.connected) == (2.5, 1, 2, False)


def _random_like(abstract, seed):
    """Random numbers (normal, scale 0.5) in the shapes of an abstract pytree: parameters without
    running any initialiser (fast on a busy CPU)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: (0.5 * rng.standard_normal(a.shape)).astype(a.dtype)
                        if jnp.issubdtype(a.dtype, jnp.floating) else np.zeros(a.shape, a.dtype), abstract)


def _env_and_learner(env_id, steps):
    env_fn = lambda: make_env(env_id, max_episode_steps=steps)  # noqa: E731
    env = env_fn()
    learner = make_learner("sac", env.observation_space.shape[0], env.action_space.shape[0], {"hidden_dims": (8, 8)})
    env.close()
    abstract = jax.eval_shape(learner.init, jax.random.PRNGKey(0)).params["actor"]
    actors = ls.stack([_random_like(abstract, i) for i in range(3)])
    return env_fn, learner, actors


def _one_env_loop(learner, actor, env_fn, seed):
    act = jax.jit(lambda p, o: learner.act(TrainState({"actor": p}, {}, jnp.zeros((), jnp.int32)), o,
                                           jax.random.PRNGKey(0), True))
    env = env_fn()
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        obs, r, terminated, truncated, _ = env.step(np.asarray(act(actor, obs)))
        total += r
        done = terminated or truncated
    env.close()
    return total


@pytest.mark.parametrize("env_id,steps", [("Pendulum-v1", 25), ("Hopper-v5", 200)])
def test_evaluate_stacked_agrees_with_separate_evaluation(env_id, steps):
    """All points in one batch == each point alone (same seeds); == a plain loop. On Hopper the
    episodes end at different steps, so the masking of finished episodes is exercised."""
    env_fn, learner, actors = _env_and_learner(env_id, steps)
    batched = ls.evaluate_stacked(learner, actors, env_fn, episodes=2, seed=7)
    assert batched.shape == (3, 2)
    separate = np.concatenate([ls.evaluate_stacked(learner, ls.stack([ls.take(actors, i)]), env_fn, 2, 7)
                               for i in range(3)])
    np.testing.assert_array_equal(batched, separate)
    assert np.ptp(batched[:, 0]) > 1e-3  # the points are different policies
    for i, e in ((0, 0), (2, 1)):
        ref = _one_env_loop(learner, ls.take(actors, i), env_fn, 7 + e)
        np.testing.assert_allclose(batched[i, e], ref, rtol=1e-5)


def test_tsne_trajectories_shapes():
    trajs = [[_random_params(10 * t + i) for i in range(4)] for t in range(2)]
    out = ls.tsne_trajectories(trajs, seed=0, max_iter=250)
    assert [o.shape for o in out] == [(4, 2), (4, 2)]
    assert np.all(np.isfinite(np.concatenate(out)))

    with pytest.raises(ls.LandscapeInputError, match=r"perplexity must be in \(0, 8\) for 8 snapshots, got 8"):
        ls.tsne_trajectories(trajs, perplexity=8)
    with pytest.raises(ls.LandscapeInputError, match="t-SNE needs at least 3 snapshots, got 2"):
        ls.tsne_trajectories([trajs[0][:2]])


def test_interpolation_grid_holds_both_checkpoints():
    np.testing.assert_allclose(ls.interpolation_grid(5), [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(ls.interpolation_grid(5, extend=True), [-0.25, 0, 0.25, 0.5, 0.75, 1, 1.25])
    for points in (3, 6, 11, 21):  # the same spacing, 0 and 1 on the grid, at most 0.25 beyond
        t = ls.interpolation_grid(points, extend=True)
        np.testing.assert_allclose(np.diff(t), 1 / (points - 1))
        assert np.isclose(t, 0).sum() == 1 and np.isclose(t, 1).sum() == 1
        assert -0.25 - 1e-9 <= t[0] and t[-1] <= 1.25 + 1e-9 and (t < 0).sum() == (t > 1).sum()


# ------------------------------------------------------------------------------------ checkpoints
def _fake_run(workdir, dataset_id, online="sac", hidden=(8, 8)):
    """A workdir laid out as the pipeline writes it (config.json, checkpoints/offline|online/<step>)
    with random 2-seed learner states in the learners' layouts; returns the saved actors by (phase, step)."""
    config = tiny_config(dataset_id, "sac", online)
    for agent in (config.offline.agent, config.online.agent):
        agent.hidden_dims = hidden
    os.makedirs(workdir)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(config.to_dict(), f, default=str)
    saved = {}
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=10)
    for phase, name in (("offline", "sac"), ("online", online)):
        learner = make_learner(name, 3, 1, {"hidden_dims": hidden})
        abstract = jax.eval_shape(jax.vmap(learner.init), jax.random.split(jax.random.PRNGKey(0), 2))
        for step in (100, 200):
            states = _random_like(abstract, step + (phase == "online") + 7 * (online != "sac"))
            tree = states if phase == "offline" else {"states": states, "buffers": {"rows": jnp.zeros((2, 4, 5))}}
            ckpt.save(phase, step, tree, {"step": step})
            saved[phase, step] = jax.tree.map(np.asarray, states.params["actor"])
    ckpt.close()
    return saved


@pytest.fixture(scope="module")
def fake_runs(tmp_path_factory, pendulum_dataset_id):
    """Two fake runs: SAC -> SAC and SAC -> TD3+BC (another offline actor), with their saved actors."""
    root = tmp_path_factory.mktemp("runs")
    return {online: (str(root / online), _fake_run(str(root / online), pendulum_dataset_id, online))
            for online in ("sac", "td3bc")}


def test_load_actor_from_checkpoints(tmp_path, fake_runs):
    wd, saved = fake_runs["td3bc"]
    assert ls.checkpoint_steps(wd, "offline") == [100, 200]
    snap = ls.load_actor(wd, "online")  # the last step
    assert (snap.step, snap.kind, snap.n_seeds) == (200, "deterministic", 2)
    _assert_tree_equal(snap.actor, saved["online", 200])
    traj = ls.load_trajectory(wd)
    assert [(s.phase, s.step) for s in traj] == [("offline", 100), ("offline", 200), ("online", 100), ("online", 200)]
    _assert_tree_equal(traj[0].actor, saved["offline", 100])
    learner, actors = ls.common_actors([traj[1], traj[3]])  # Gaussian + deterministic: log_std dropped
    assert learner.actor_kind == "deterministic" and "log_std" not in actors[0]["params"]
    for bad, match in ((lambda: ls.load_actor(str(tmp_path / "nope"), "offline"), "does not exist"),
                       (lambda: ls.load_actor(wd, "offline", 150), "no offline checkpoint at step 150")):
        with pytest.raises(ls.LandscapeInputError, match=match):
            bad()
    other = str(tmp_path / "other")
    shutil.copytree(wd, other)
    cfg = json.load(open(os.path.join(other, "config.json")))
    cfg["offline"]["agent"]["hidden_dims"] = [16, 16]  # a config that builds another actor
    json.dump(cfg, open(os.path.join(other, "config.json"), "w"))
    with pytest.raises(ls.LandscapeInputError, match="does not match"):
        ls.load_actor(other, "offline")
    damaged = str(tmp_path / "damaged")  # a checkpoint whose files were emptied (a full disk, a copy cut short)
    shutil.copytree(wd, damaged)
    state = os.path.join(damaged, "checkpoints", "online", "200", "state")
    for name in os.listdir(state):
        if os.path.isfile(os.path.join(state, name)):
            open(os.path.join(state, name), "w").close()
    with pytest.raises(ls.LandscapeInputError, match=f"^cannot read {re.escape(state)}: "):
        ls.load_actor(damaged, "online")


def test_landscape_command_line(tmp_path, fake_runs, minari_store):
    runs = [fake_runs["sac"][0], fake_runs["td3bc"][0]]
    script = os.path.join(REPO_ROOT, "experiments", "landscape.py")
    env = script_env(MINARI_DATASETS_PATH=str(minari_store))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, script, f"--workdirs={','.join(runs)}", f"--plane={','.join(runs)}",
                           f"--out={out}", "--points=3", "--plane_points=3", "--episodes=1", "--batch_points=7"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(os.listdir(out)) == ["interpolation.csv", "interpolation.png", "interpolation_summary.json",
                                       "plane.npz", "plane.png", "tsne.csv", "tsne.png"]
    plane = np.load(out / "plane.npz")
    # 3 points over [-0.5, 1.5] miss the checkpoints' coordinates 0 and 1: they are added to the grid
    np.testing.assert_array_equal(plane["xs"], [-0.5, 0.0, 0.5, 1.0, 1.5])
    assert plane["value"].shape == (5, 5)
    np.testing.assert_array_equal(plane["point_xy"][:3], [[0, 0], [1, 0], [0, 1]])
    summary = json.load(open(out / "interpolation_summary.json"))
    assert len(summary) == 2 and all(len(s["mean"]) == 3 for s in summary.values())
    # what was evaluated is recorded: each run's workdir and checkpoints, the episodes and their seeds
    assert sorted(s["workdir"] for s in summary.values()) == sorted(runs)
    assert all(isinstance(s["online_step"], int) and s["episodes"] == 1 and s["eval_seed"] == 0 for s in summary.values())
    # an earlier run's outputs: refused without --overwrite; with it, none of them stays beside the new ones
    again = [sys.executable, script, f"--workdirs={runs[0]}", f"--out={out}", "--points=3", "--episodes=2", "--notsne"]
    proc = subprocess.run(again, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {out} already holds interpolation.png, ")
    proc = subprocess.run(again + ["--overwrite"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(os.listdir(out)) == ["interpolation.csv", "interpolation.png", "interpolation_summary.json"]
    # bad input: one line "error: ...", exit status 2
    proc = subprocess.run([sys.executable, script, f"--workdirs={tmp_path / 'missing'}", f"--out={out}"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: workdir {tmp_path / 'missing'} does not exist"]
    proc = subprocess.run(again[:-1] + [f"--out={out / 'interpolation.csv'}"], capture_output=True, text=True, env=env,
                          timeout=300)  # --out naming a file: one line before any evaluation
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == (
        f"error: --out {out / 'interpolation.csv'} is a file; --out names the directory the results are written to")
