"""D4RL's own HDF5 files imported as Minari datasets (smac_jax.data.d4rl, experiments/import_d4rl.py).

The files are written here in D4RL's layout (flat per-transition arrays, ``terminals``,
``timeouts``, optional ``next_observations`` and ``infos/goal_achieved``) from Hopper-v5 rollouts.
"""
from __future__ import annotations

import os
import subprocess
import sys

import gymnasium as gym
import h5py
import numpy as np
import pytest

from conftest import REPO_ROOT, script_env
from smac_jax.data.d4rl import D4RL_REFERENCE_SCORES, d4rl_dataset_name, d4rl_files, import_d4rl_file
from smac_jax.data.dataset import DatasetError, load_dataset
from smac_jax.training.phases import check_env_fits

CAP = 8  # steps after which a rollout is cut by a time limit


def hopper_rows(seed: int = 0):
    """D4RL-layout rows of Hopper-v5 under random actions: whole episodes of at most ``CAP`` steps
    (cut ones flagged in ``timeouts``, ended ones in ``terminals``) until at least one of each
    kind, then 3 rows of an unfinished episode."""
    env = gym.make("Hopper-v5")
    env.action_space.seed(seed)
    rows = {k: [] for k in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")}
    kinds, ep = set(), 0
    while kinds != {"terminal", "timeout"} or ep < 3:
        obs, _ = env.reset(seed=seed + ep)
        ep += 1
        for t in range(CAP):
            a = env.action_space.sample() * (3.0 if ep % 2 else 0.2)  # some episodes fall, others time out
            a = np.clip(a, -1, 1)
            nxt, r, term, _, _ = env.step(a)
            last = term or t == CAP - 1
            for k, v in zip(rows, (obs, a, r, nxt, term, last and not term)):
                rows[k].append(v)
            obs = nxt
            if last:
                kinds.add("terminal" if term else "timeout")
                break
    obs, _ = env.reset(seed=999)
    for _ in range(3):  # the unfinished tail
        a = env.action_space.sample() * 0.1
        nxt, r, term, _, _ = env.step(a)
        for k, v in zip(rows, (obs, a, r, nxt, False, False)):
            rows[k].append(v)
        obs = nxt
    return {k: np.asarray(v) for k, v in rows.items()}


class DictObsEnv(gym.Env):
    """An environment with Dict observations (like Gymnasium-Robotics' AntMaze)."""
    observation_space = gym.spaces.Dict({"x": gym.spaces.Box(-1, 1, (11,))})
    action_space = gym.spaces.Box(-1, 1, (3,))

    def reset(self, *, seed=None, options=None):
        return {"x": np.zeros(11, np.float32)}, {}

    def step(self, action):
        return {"x": np.zeros(11, np.float32)}, 0.0, False, False, {}


def write_d4rl(path, rows, next_obs=True, goal=None, drop=()):
    with h5py.File(path, "w") as f:
        for k, v in rows.items():
            if k in drop or (k == "next_observations" and not next_obs):
                continue
            f.create_dataset(k, data=v.astype(np.float32) if v.dtype.kind == "f" else v)
        if goal is not None:
            f.create_group("infos").create_dataset("goal_achieved", data=goal)
    return str(path)


@pytest.fixture(scope="module")
def rows():
    return hopper_rows()


def test_file_names_give_environment_dataset_and_version():
    assert d4rl_dataset_name("/x/hopper_medium_replay-v2.hdf5") == ("hopper", "medium-replay", "v2")
    assert d4rl_dataset_name("door-cloned-v1.hdf5") == ("door", "cloned", "v1")
    assert d4rl_dataset_name("walker2d_medium_expert-v2.hdf5") == ("walker2d", "medium-expert", "v2")
    with pytest.raises(DatasetError, match="not a D4RL file name"):
        d4rl_dataset_name("my_data.hdf5")


def test_import_with_next_observations_keeps_every_row(rows, tmp_path, minari_store):
    path = write_d4rl(tmp_path / "hopper_medium_replay-v2.hdf5", rows)
    assert import_d4rl_file(path, dataset_id="test-d4rl/hopper/full-v2") == "test-d4rl/hopper/full-v2"
    d = load_dataset("test-d4rl/hopper/full-v2")
    t = d.transitions
    np.testing.assert_allclose(t.obs, rows["observations"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(t.next_obs, rows["next_observations"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(t.action, rows["actions"], rtol=0, atol=1e-6)  # Hopper's actions are in [-1, 1]
    np.testing.assert_allclose(t.reward, rows["rewards"], rtol=1e-6)
    np.testing.assert_array_equal(t.terminated, rows["terminals"].astype(np.float32))
    ends = rows["terminals"] | rows["timeouts"]
    assert d.n_episodes == int(ends.sum()) + 1  # and the unfinished tail
    assert t.truncated[-1] == 1.0 and t.truncated[np.flatnonzero(rows["timeouts"])].all()
    assert (d.ref_min_score, d.ref_max_score) == D4RL_REFERENCE_SCORES["hopper"]
    assert d.env_spec.id == "Hopper-v5" and d.env_spec.max_episode_steps == 1000
    check_env_fits(d)


def test_import_without_next_observations_drops_only_time_limited_last_rows(rows, tmp_path, minari_store):
    path = write_d4rl(tmp_path / "hopper_medium_replay-v2.hdf5", rows, next_obs=False)
    import_d4rl_file(path, dataset_id="test-d4rl/hopper/nonext-v2")
    t = load_dataset("test-d4rl/hopper/nonext-v2").transitions
    dropped = np.flatnonzero(rows["timeouts"]).tolist() + [len(rows["rewards"]) - 1]  # and the tail's last row
    keep = np.setdiff1d(np.arange(len(rows["rewards"])), dropped)
    np.testing.assert_allclose(t.obs, rows["observations"][keep], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(t.terminated, rows["terminals"][keep].astype(np.float32))
    inner = ~(rows["terminals"][keep].astype(bool))  # a kept non-terminal row's next obs is the next row's obs
    np.testing.assert_allclose(t.next_obs[inner], rows["observations"][keep[inner] + 1], rtol=0, atol=1e-6)


def test_goal_achieved_becomes_the_success_reward(rows, tmp_path, minari_store):
    goal = np.zeros(len(rows["rewards"]), bool)
    goal[1::4] = True
    path = write_d4rl(tmp_path / "hopper_medium_replay-v2.hdf5", rows, goal=goal)
    import_d4rl_file(path, dataset_id="test-d4rl/hopper/goal-v2")
    t = load_dataset("test-d4rl/hopper/goal-v2", reward="success").transitions
    np.testing.assert_array_equal(t.reward, goal.astype(np.float32))


def test_bad_files_and_existing_ids_are_one_line_errors_and_lose_nothing(rows, tmp_path, minari_store):
    good = write_d4rl(tmp_path / "hopper_medium_replay-v2.hdf5", rows)
    import_d4rl_file(good, dataset_id="test-d4rl/hopper/kept-v2")
    with pytest.raises(DatasetError, match="already a local dataset; pass --overwrite"):
        import_d4rl_file(good, dataset_id="test-d4rl/hopper/kept-v2")
    no_timeouts = write_d4rl(tmp_path / "hopper_broken-v2.hdf5", rows, drop=("timeouts",))
    with pytest.raises(DatasetError, match=r"not a D4RL dataset file: no timeouts"):
        import_d4rl_file(no_timeouts, dataset_id="test-d4rl/hopper/kept-v2", overwrite=True)
    assert load_dataset("test-d4rl/hopper/kept-v2").transitions.obs.shape[0] == len(rows["rewards"])  # not lost
    wide = dict(rows, observations=np.pad(rows["observations"], ((0, 0), (0, 1))))
    with pytest.raises(DatasetError, match=r"observations \(12,\) / actions \(3,\) do not fit Hopper-v5 \(11 / 3\)"):
        import_d4rl_file(write_d4rl(tmp_path / "hopper_wide-v2.hdf5", wide), dataset_id="test-d4rl/hopper/wide-v2")
    nan = dict(rows, rewards=np.where(np.arange(len(rows["rewards"])) == 5, np.nan, rows["rewards"]))
    with pytest.raises(DatasetError, match="rewards is not finite at row 5"):
        import_d4rl_file(write_d4rl(tmp_path / "hopper_nan-v2.hdf5", nan), dataset_id="test-d4rl/hopper/nan-v2")
    with pytest.raises(DatasetError, match="no Gymnasium environment known for D4RL's 'antmaze'"):
        import_d4rl_file(write_d4rl(tmp_path / "antmaze_umaze-v2.hdf5", rows))
    n = len(rows["rewards"])
    two = dict(rows, rewards=np.stack([rows["rewards"]] * 2, axis=1))  # would read as 2n rewards, shifted
    with pytest.raises(DatasetError, match=rf"rewards has shape \({n}, 2\): one value per row expected"):
        import_d4rl_file(write_d4rl(tmp_path / "hopper_two-v2.hdf5", two), dataset_id="test-d4rl/hopper/two-v2")
    half = dict(rows, terminals=np.where(np.arange(n) == 3, 0.5, rows["terminals"]))
    with pytest.raises(DatasetError, match="terminals holds 0.5 at row 3: flags must be 0 or 1"):
        import_d4rl_file(write_d4rl(tmp_path / "hopper_half-v2.hdf5", half), dataset_id="test-d4rl/hopper/half-v2")
    # data the loader would refuse does not replace a local dataset: checked before anything is deleted
    wild = dict(rows, actions=np.where(np.arange(n)[:, None] == 4, 5.0, rows["actions"]))
    with pytest.raises(DatasetError, match=r"outside the dataset's action space .* worst value 5 .* row 4"):
        import_d4rl_file(write_d4rl(tmp_path / "hopper_wild-v2.hdf5", wild), dataset_id="test-d4rl/hopper/kept-v2",
                         overwrite=True)
    assert load_dataset("test-d4rl/hopper/kept-v2").transitions.obs.shape[0] == n
    gym.register("D4rlDictObs-v0", entry_point=f"{__name__}:DictObsEnv", max_episode_steps=10)
    with pytest.raises(DatasetError, match="D4rlDictObs-v0 has Dict observations, and D4RL's flat arrays import only"):
        import_d4rl_file(good, dataset_id="test-d4rl/hopper/dict-v2", env_id="D4rlDictObs-v0")
    with pytest.raises(DatasetError, match=r"^environment 'Nope-v0': .*Nope"):
        import_d4rl_file(good, dataset_id="test-d4rl/hopper/nope-v2", env_id="Nope-v0")


def test_file_patterns_name_every_matching_file_once(tmp_path):
    for name in ("hopper_medium-v2.hdf5", "walker2d_medium-v2.hdf5", "notes.txt"):
        (tmp_path / name).write_text("")
    both = d4rl_files([str(tmp_path / "*.hdf5"), str(tmp_path / "hopper_medium-v2.hdf5")])
    assert both == [str(tmp_path / "hopper_medium-v2.hdf5"), str(tmp_path / "walker2d_medium-v2.hdf5")]
    with pytest.raises(DatasetError, match=r"\*.h5: no such file"):
        d4rl_files([str(tmp_path / "*.h5")])


def test_cli_imports_every_file_of_a_pattern_and_fails_in_one_line(rows, tmp_path, minari_store):
    files = tmp_path / "d4rl"
    files.mkdir()
    write_d4rl(files / "antmaze_umaze-v2.hdf5", rows)  # no environment known: skipped, the others imported
    write_d4rl(files / "hopper_clione-v2.hdf5", rows)
    write_d4rl(files / "hopper_clitwo-v2.hdf5", rows, next_obs=False)
    env = script_env(MINARI_DATASETS_PATH=str(minari_store))
    cmd = [sys.executable, "experiments/import_d4rl.py", f"--file={files}/*.hdf5"]
    first = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 2, first.stderr[-2000:]
    out = first.stdout.splitlines()
    assert out[0].startswith(f"skipped {files}/antmaze_umaze-v2.hdf5: ") and "no Gymnasium environment known" in out[0]
    assert [line.split()[1].rstrip(";") for line in out[1:]] == ["d4rl/hopper/clione-v2", "d4rl/hopper/clitwo-v2"]
    assert "--config.dataset.id=d4rl/hopper/clione-v2 --config.dataset.generate=False" in first.stdout
    assert [line for line in first.stderr.splitlines() if line.startswith("error: ")] == [
        "error: 1 of 3 files not imported (antmaze_umaze-v2.hdf5); the reasons are above"]
    assert "UserWarning" not in first.stderr  # Minari's advice on a missing author is not shown
    one = subprocess.run(cmd[:2] + [f"--file={files}/hopper_clione-v2.hdf5"], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 2
    errors = [line for line in one.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: d4rl/hopper/clione-v2 is already a local dataset; pass --overwrite to replace it"]
    assert "Traceback" not in one.stderr + first.stderr


def test_an_unflagged_reset_in_next_observations_ends_an_episode(rows, tmp_path, minari_store):
    """A row whose next observation is not the following row's observation (a reset the file does
    not flag) ends its episode there, truncated: every stored transition stays the file's own."""
    flagged = rows["terminals"] | rows["timeouts"]
    cut = int(np.flatnonzero(~flagged[:-1])[1])  # an inner row of an episode
    broken = dict(rows, next_observations=rows["next_observations"].copy())
    broken["next_observations"][cut] += 1000.0
    import_d4rl_file(write_d4rl(tmp_path / "hopper_medium_replay-v2.hdf5", broken), dataset_id="test-d4rl/hopper/reset-v2")
    d = load_dataset("test-d4rl/hopper/reset-v2")
    np.testing.assert_allclose(d.transitions.next_obs, broken["next_observations"], rtol=0, atol=1e-4)
    assert d.n_episodes == int(flagged.sum()) + 2  # the unfinished tail, and the cut
    assert d.transitions.truncated[cut] == 1.0 and d.transitions.terminated[cut] == 0.0


def test_a_malformed_dataset_id_is_refused_before_anything_is_written(rows, tmp_path, minari_store):
    import minari

    good = write_d4rl(tmp_path / "hopper_medium_replay-v2.hdf5", rows)
    for bad in ("hopper-medium", "bad ns/hopper/medium-v2"):
        with pytest.raises(DatasetError, match=r"--dataset_id '.*' is not a Minari dataset id: \(namespace/\)name-vN"):
            import_d4rl_file(good, dataset_id=bad)
    minari.list_local_datasets()  # the store still lists (a malformed id's directory broke every listing)
    assert not os.path.exists(os.path.join(str(minari_store), "hopper-medium"))
