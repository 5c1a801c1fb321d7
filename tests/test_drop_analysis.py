"""Is a transfer drop real? The null drop and the paired drop (smac_jax.analysis.drop) on hand-made
scores with known answers, and the experiments/transfer_check.py command line on a tiny real run."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT, script_env

from smac_jax.analysis.drop import null_drop, paired_drop
from smac_jax.training import pipeline
from smac_jax.training.logger import MetricsLog


def run_script(name: str, args: list[str], minari_store, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python experiments/<name> <args>`` on the test dataset store, CPU only."""
    env = script_env(MINARI_DATASETS_PATH=str(minari_store))
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "experiments", name), *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


def test_null_drop_of_a_constant_policy_is_zero():
    nd = null_drop(np.full(50, 42.0), n_episodes=5, n_online_evals=2)
    assert nd.rate == 0.0 and nd.mean == 0.0 and nd.p90 == 0.0


@pytest.mark.parametrize("n_online, rate", [(1, 0.25), (2, 0.5 * 0.75), (3, 0.5 * 0.875)])
def test_null_drop_two_point_policy_matches_the_exact_rate(n_online, rate):
    # one episode per evaluation, scores 0 or 100: drop > 5 iff S_off = 100 and some online eval = 0
    nd = null_drop(np.array([0.0, 100.0]), n_episodes=1, n_online_evals=n_online, reps=40_000)
    assert nd.rate == pytest.approx(rate, abs=0.01)
    assert nd.mean == pytest.approx(100 * rate, abs=1.0)


def test_null_drop_falls_with_more_episodes():
    x = np.random.default_rng(0).normal(50, 20, size=200)
    few, many = null_drop(x, 5, 2), null_drop(x, 50, 2)
    assert few.rate > 0.4 and many.rate < few.rate / 2  # about 0.50 and 0.17


def test_paired_drop_cancels_start_states():
    start = np.array([[0.0, 40.0, 90.0, 10.0]])  # episode scores differ a lot with the start state
    online = np.stack([start - 3.0, start + 2.0, start - 1.0])  # three checkpoints, shifted
    pd = paired_drop(start, online)
    assert pd.worst.tolist() == [0]
    assert pd.drop == pytest.approx([3.0]) and pd.diff == pytest.approx([3.0])
    assert pd.se == pytest.approx([0.0])
    assert pd.means[:, 0] == pytest.approx(start.mean() + np.array([-3.0, 2.0, -1.0]))


def test_paired_drop_of_an_improvement_is_zero_and_se_matches_numpy():
    rng = np.random.default_rng(1)
    off = rng.normal(30, 10, size=(2, 20))
    on = off[None] + rng.normal(4, 2, size=(3, 2, 20))
    pd = paired_drop(off, on)
    assert (pd.drop == 0).all() and (pd.diff < 0).all()
    for s in range(2):
        d = off[s] - on[pd.worst[s], s]
        assert pd.se[s] == pytest.approx(np.std(d, ddof=1) / np.sqrt(20))
        assert pd.worst[s] == np.argmin(on[:, s].mean(-1))


def test_paired_drop_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="matching seeds and episodes"):
        paired_drop(np.zeros((3, 10)), np.zeros((2, 3, 9)))
    with pytest.raises(ValueError, match="at least 2 episodes"):
        paired_drop(np.zeros((3, 1)), np.zeros((2, 3, 1)))


def test_transfer_check_command_line(tmp_path, make_tiny_config, minari_store):
    wd = str(tmp_path / "run")
    pipeline.run(make_tiny_config("sac", "sac"), wd, progress=False)  # online checkpoints at 60 and 120
    # 120 online steps: the protocol's window (12 steps) ends before learning starts (step 20)
    summary = json.load(open(os.path.join(wd, "summary.json")))
    assert summary["transfer_drop_warning"].startswith("no online evaluation after learning starts (step 20)")
    out = tmp_path / "out"
    proc = run_script("transfer_check.py", [f"--workdirs={wd}", f"--out={out}", "--episodes=3", "--window_steps=60"],
                      minari_store)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(os.listdir(out)) == ["transfer_check.json", "transfer_check.png"]
    (r,) = json.load(open(out / "transfer_check.json"))
    assert r["checkpoint_steps"] == [0, 60] and np.shape(r["mean_scores"]) == (2, 2)
    m = np.asarray(r["mean_scores"])
    assert r["paired_drop"] == pytest.approx(np.maximum(0, m[0] - m[1]))
    # the protocol's drop, by hand from metrics.jsonl: last offline evaluation - lowest online one up to step 60
    log = MetricsLog(os.path.join(wd, "metrics.jsonl"))
    assert r["metric"] == "eval_score"  # the test dataset has reference returns
    _, off = log.evaluations("offline", r["metric"])
    on_steps, on = log.evaluations("online", r["metric"])
    assert r["protocol_evals_in_window"] == 2 and on_steps.tolist()[:2] == [0, 60]
    assert r["protocol_drop"] == pytest.approx(np.maximum(0, off[:, -1] - on[:, :2].min(1)))
    assert len(r["null_drop_rate"]) == 2 and all(0 <= p <= 1 for p in r["null_drop_rate"])
    # no online checkpoint inside the window: one line, exit status 2
    # an earlier run's results are not replaced without --overwrite
    proc = run_script("transfer_check.py", [f"--workdirs={wd}", f"--out={out}", "--window_steps=30"], minari_store,
                      timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {out} already holds transfer_check.json, transfer_check.png from an earlier run; pass --overwrite "
        "to replace them, or give another --out"]
    proc = run_script("transfer_check.py", [f"--workdirs={wd}", f"--out={out}", "--window_steps=30", "--overwrite"],
                      minari_store, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {wd}: no online checkpoint in the first 30 steps (saved: [60, 120]); its checkpoints come every 60 "
        "steps: run with online.ckpt_every <= 30"]


def test_compare_page_states_the_drop_noise(tmp_path, make_tiny_config, minari_store):
    """experiments/compare.py's last column: per seed, null_drop of the final offline actor's episode
    scores on the run's own schedule. The scores are recomputed with gymnasium and a float64 NumPy
    forward pass of the saved actor, from the start states the column uses (reset seeds 1e6 + e)."""
    import jax
    from np_reference import np_episode, np_gaussian

    from smac_jax.analysis import landscape as ls
    from smac_jax.data.dataset import load_dataset_from_config

    config = make_tiny_config("sac", "sac")
    wd = str(tmp_path / "root" / "sac-sac")
    pipeline.run(config, wd, progress=False)
    _, _, params = ls.load_params(wd, "offline", None, ("actor",))
    dataset = load_dataset_from_config(config.dataset)
    lo, hi = dataset.ref_min_score, dataset.ref_max_score
    on_steps, _ = MetricsLog(os.path.join(wd, "metrics.jsonl")).evaluations("online", "eval_score")
    n_early = int((on_steps <= 0.1 * config.online.steps).sum())
    episodes, expected = 4, []
    for i in range(config.n_seeds):
        actor = jax.tree.map(lambda x: x[i], params["actor"])
        policy = lambda o: np.tanh(np_gaussian(actor, o[None])[0])[0]  # noqa: E731
        scores = []
        for e in range(episodes):
            env_ = dataset.make_env()
            scores.append(100.0 * (np_episode(env_, policy, 1_000_000 + e, 1.0)[1] - lo) / (hi - lo))
            env_.close()
        expected.append(null_drop(np.array(scores), config.eval.episodes, n_early, 5.0, seed=i).rate)
    page = tmp_path / "page.md"
    args = [f"--root={tmp_path / 'root'}", "--offline=sac", "--online=sac", "--only_report", f"--page={page}"]
    proc = run_script("compare.py", args + [f"--noise_episodes={episodes}"], minari_store, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = open(page).read().splitlines()
    header, (row,) = lines[[i for i, ln in enumerate(lines) if ln.startswith("| run |")][0]], \
        [ln for ln in lines if ln.startswith("| sac -> sac |")]
    assert header.endswith("| P(drop > 5) if the policy had not changed (per seed) |")
    got = [float(x) for x in row.rstrip(" |").split(" | ")[-1].split(", ")]
    assert got == pytest.approx(expected, abs=0.006)  # printed to two decimals
    assert any("although the policy never changed" in ln for ln in lines)
    # a failing rerun leaves the page as it was (its dataset gone: the noise column cannot be computed)
    proc = run_script("compare.py", args + [f"--noise_episodes={episodes}"], tmp_path / "empty_store", timeout=180)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: --noise_episodes: ")
    assert open(page).read().splitlines() == lines
    proc = run_script("compare.py", args + ["--noise_episodes=1"], minari_store, timeout=180)
    assert proc.stderr.strip().splitlines() == [
        "error: --noise_episodes must be 0 (off) or >= 2 (a spread needs two scores), got 1"]
    # without noise (--noise_episodes=0): the table as before, the same cells
    from smac_jax.analysis.compare import load_labelled, table

    plain = table(load_labelled(wd)).splitlines()
    assert "if the policy had not changed" not in plain[0] and plain[2] == row[:len(plain[2])]
    # a finished run of another config than the command's is not reused as if it were the command's
    args = [f"--root={tmp_path / 'root'}", "--offline=sac", "--online=sac", "--task=pendulum", "--noise_episodes=0"]
    proc = run_script("compare.py", args, minari_store, timeout=180)
    assert proc.returncode == 2 and "holds a finished run of another config" in proc.stderr, proc.stderr[-2000:]


def test_transfer_check_continuation_control(tmp_path, make_tiny_config, minari_store):
    """continue_offline.py continues the checked run's offline phase past its hand-over (step 200);
    transfer_check --continuation evaluates it at the hand-over and at its offline checkpoints within
    the window's updates (window 120 - learning_starts 20 = 100: steps 250 and 300, not 350), and for a
    run with fewer updates in its window over the checkpoints within those."""
    wd, cont = str(tmp_path / "run"), str(tmp_path / "cont")
    pipeline.run(make_tiny_config("sac", "sac"), wd, progress=False)
    # a run made before a config field existed: the continuation gives that field its default
    cfg_path = os.path.join(wd, "config.json")
    stored = json.load(open(cfg_path))
    del stored["online"]["critic_warmup"]
    json.dump(stored, open(cfg_path, "w"))
    proc = run_script("continue_offline.py", [f"--run={wd}", "--updates=150", "--ckpt_every=50", f"--workdir={cont}",
                                              "--progress=false"], minari_store)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "offline phase continued from update 200 to 350" in proc.stdout
    rows = [json.loads(line) for line in open(os.path.join(cont, "metrics.jsonl"))]
    assert sorted({r["step"] for r in rows if r["phase"] == "offline"}) == [50, 100, 150, 200, 250, 300, 350]
    assert not os.path.exists(os.path.join(wd, "checkpoints", "offline", "250"))  # the source is untouched
    # with a second run whose window holds fewer updates (a copy with learning starts at 70: 50 updates,
    # checkpoint 250 only): the control over 100 updates, and per number of updates over the checkpoints within it
    late = str(tmp_path / "late")
    shutil.copytree(wd, late)
    json.dump({**stored, "online": {**stored["online"], "learning_starts": 70}},
              open(os.path.join(late, "config.json"), "w"))
    out = tmp_path / "out"
    args = [f"--workdirs={wd}", f"--out={out}", "--episodes=3", "--window_steps=120"]
    proc = run_script("transfer_check.py", [f"--workdirs={wd},{late}", "--labels=early,late", f"--out={out}",
                                            "--episodes=3", "--window_steps=120", f"--continuation={cont}"],
                      minari_store)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ("control: the offline phase continued for 100 updates after the hand-over (step 200), 3 common "
            "episodes (the window of early)") in proc.stdout
    assert "for 50 updates after the hand-over (step 200), 3 common episodes (the window of late)" in proc.stdout
    r, _ = json.load(open(out / "transfer_check.json"))
    c = json.load(open(out / "continuation_control.json"))
    assert c["handover_step"] == 200 and c["updates"] == 100 and c["checkpoint_steps"] == [200, 250, 300]
    m = np.asarray(c["mean_scores"])
    # the same offline training up to the hand-over: the same actor, the same start states
    assert m[0] == pytest.approx(r["mean_scores"][0], rel=1e-5)
    assert c["paired_drop"] == pytest.approx(np.maximum(0, m[0] - m[1:].min(0)))
    assert c["by_updates"]["100"]["paired_drop"] == pytest.approx(c["paired_drop"])
    assert c["by_updates"]["50"]["paired_drop"] == pytest.approx(np.maximum(0, m[0] - m[1]))
    assert c["by_updates"]["50"]["paired_worst_step"] == [250] * m.shape[1]
    # a continuation without offline checkpoints inside the window: one line, exit status 2
    proc = run_script("transfer_check.py", args + [f"--continuation={wd}", "--overwrite"], minari_store)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: --continuation: {wd} needs offline checkpoints at the hand-over (200) and within 100 updates "
        "after it (saved: [100, 200])"]
    # a continuation of another offline phase (another seed) is not a control for this run
    other = str(tmp_path / "other")
    cfg = make_tiny_config("sac", "sac")
    cfg.seed = 7
    pipeline.run(cfg, other, progress=False)
    proc = run_script("transfer_check.py", [f"--workdirs={other}", f"--out={tmp_path / 'out2'}", "--episodes=3",
                                            "--window_steps=120", f"--continuation={cont}"], minari_store)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: --continuation: {cont}'s actor at the hand-over (offline step 200) is not {other}'s: the control "
        "must continue the checked runs' own offline phase (experiments/continue_offline.py --run=<one of them>)"]


def test_value_check_against_a_rollout_and_numpy_critic(tmp_path, make_tiny_config, minari_store):
    """experiments/value_check.py: per seed, Q(s0, pi(s0)) (min over the ensemble) and the
    discounted return of the deterministic policy from the same start states, recomputed with
    gymnasium and a float64 NumPy forward pass of the checkpoint's actor and critic."""
    import jax
    from np_reference import np_episode, np_gaussian, np_q

    from smac_jax.analysis import landscape as ls
    from smac_jax.data.dataset import load_dataset_from_config

    config = make_tiny_config("sac", "sac", **{"online.steps": 0})
    wd = str(tmp_path / "run")
    pipeline.run(config, wd, progress=False)  # offline checkpoints at 100 and 200
    out = tmp_path / "out"
    proc = run_script("value_check.py", [f"--workdir={wd}", f"--out={out}", "--episodes=2", "--eval_seed=7"],
                      minari_store)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(os.listdir(out)) == ["value_check.json", "value_check.png"]
    again = run_script("value_check.py", [f"--workdir={wd}", f"--out={out}", "--episodes=2"], minari_store)
    assert again.returncode == 2 and again.stderr.strip().splitlines() == [
        f"error: {out} already holds value_check.json, value_check.png from an earlier run; pass --overwrite to "
        "replace them, or give another --out"]
    res = json.load(open(out / "value_check.json"))
    assert [r["step"] for r in res["checkpoints"]] == [100, 200]
    last = res["checkpoints"][-1]
    _, _, params = ls.load_params(wd, "offline", 200, ("actor", "critic"))
    dataset = load_dataset_from_config(config.dataset)
    gamma = config.offline.agent.gamma
    for i in range(config.n_seeds):
        actor = jax.tree.map(lambda x: x[i], params["actor"])
        critic = jax.tree.map(lambda x: x[i], params["critic"])
        policy = lambda o: np.tanh(np_gaussian(actor, o[None])[0])[0]  # noqa: E731
        qs, disc = [], []
        for e in range(2):
            env_ = dataset.make_env()
            obs, total = np_episode(env_, policy, 7 + e, gamma)
            env_.close()
            qs.append(np_q(critic, obs[None], policy(obs)[None]).min(0)[0])
            disc.append(total)
        assert last["q_start"][i] == pytest.approx(np.mean(qs), rel=1e-4, abs=1e-4)
        assert last["discounted_return"][i] == pytest.approx(np.mean(disc), rel=1e-4)
        assert last["q_minus_return"][i] == pytest.approx(np.mean(qs) - np.mean(disc), rel=1e-3, abs=1e-3)
    proc = run_script("value_check.py", [f"--workdir={wd}", "--steps=150"], minari_store, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {wd} has no offline checkpoint at step 150 (saved: [100, 200])"]
