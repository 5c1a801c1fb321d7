"""Sweeps (smac_jax/training/sweep.py): one offline phase per (dataset, offline learner, seed set)
shared by every fine-tune, byte-identical to plain runs, resumable; and the report's regret table.

Tiny runs (tests/conftest.py): SAC offline, SAC and TD3 online, 2 seeds.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil

import numpy as np
import pytest

from smac_jax.analysis.report import write_report
from smac_jax.errors import ConfigError
from smac_jax.training import online, phases, pipeline
from smac_jax.training.logger import MetricsLog
from smac_jax.training.sweep import groups, parse_shard, run_sweep

OFF, ONS = "sac", ("sac", "td3")
TASK = "pendulum"
OFFLINE_CHUNKS = 4  # tiny config: 200 offline updates in chunks of 50
ONLINE_CHUNKS = 3  # tiny config: 120 environment steps, chunks ending at 20, 60 and 120


class Killed(BaseException):
    pass


def sweep(root, config_fn, **kw):
    with contextlib.redirect_stdout(io.StringIO()):
        return run_sweep([TASK], [OFF], ONS, str(root), config_fn, progress=False, **kw)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def run_dirs(root):
    return [os.path.join(root, TASK, OFF, "pretrain")] + [os.path.join(root, TASK, f"{OFF}-{on}") for on in ONS]


def count_calls(mp, module, name, counter, kill_at=None):
    """Wrap ``module.name`` (a factory of jitted chunk functions) to count the chunks run, and
    raise :class:`Killed` inside chunk number ``kill_at``."""
    orig = getattr(module, name)

    def make(*a, **k):
        fn = orig(*a, **k)

        def wrapped(*args):
            counter[name] = counter.get(name, 0) + 1
            if counter[name] == kill_at:
                raise Killed(f"{name} chunk {kill_at}")
            return fn(*args)
        return wrapped

    mp.setattr(module, name, make)


@pytest.fixture(scope="module")
def config_fn(make_tiny_config):
    return lambda task, off, on: make_tiny_config(off, on)


@pytest.fixture(scope="module")
def reference(config_fn, tmp_path_factory):
    """An uninterrupted sweep, with its offline and online training chunks counted."""
    root = tmp_path_factory.mktemp("sweep")
    counter = {}
    with pytest.MonkeyPatch.context() as mp:
        count_calls(mp, phases, "make_offline_step", counter)
        count_calls(mp, online, "make_online_loop", counter)
        records = sweep(root, config_fn)
    files = {os.path.relpath(d, root): (read(os.path.join(d, "metrics.jsonl")), read(os.path.join(d, "summary.json")))
             for d in run_dirs(root)}
    return dict(root=root, records=records, counter=counter, files=files)


def test_the_offline_phase_runs_once_and_every_fine_tune_starts_from_it(reference):
    assert [(r["online"], r["status"]) for r in reference["records"]] == [(None, "ran"), ("sac", "ran"), ("td3", "ran")]
    assert reference["counter"] == {"make_offline_step": OFFLINE_CHUNKS, "make_online_loop": ONLINE_CHUNKS * len(ONS)}
    pre, *tunes = run_dirs(reference["root"])
    pre_rows = [r for r in MetricsLog(os.path.join(pre, "metrics.jsonl")).rows if r["phase"] == "offline"]
    assert [r["step"] for r in pre_rows] == [50, 50, 100, 100, 150, 150, 200, 200]
    for wd in tunes:
        rows = MetricsLog(os.path.join(wd, "metrics.jsonl")).rows
        assert [r for r in rows if r["phase"] == "offline"] == pre_rows
        assert json.load(open(os.path.join(wd, "summary.json")))["online_final_mean"] is not None
        assert sorted(os.listdir(os.path.join(wd, "checkpoints"))) == ["offline", "online"]


def test_a_fine_tune_equals_a_plain_run_byte_for_byte(reference, make_tiny_config, tmp_path):
    workdir = str(tmp_path / "plain")
    with contextlib.redirect_stdout(io.StringIO()):
        pipeline.run(make_tiny_config(OFF, "sac"), workdir, progress=False)
    assert reference["files"][f"{TASK}/{OFF}-sac"] == (read(os.path.join(workdir, "metrics.jsonl")),
                                                       read(os.path.join(workdir, "summary.json")))


def test_an_interrupted_sweep_restarts_where_it_stopped(reference, config_fn, tmp_path):
    root = tmp_path / "sweep"
    with pytest.MonkeyPatch.context() as mp:  # killed after the second fine-tune's online checkpoint at 60
        count_calls(mp, online, "make_online_loop", {}, kill_at=ONLINE_CHUNKS + 3)
        with pytest.raises(Killed):
            sweep(root, config_fn)
    assert os.path.exists(os.path.join(root, TASK, f"{OFF}-sac", "summary.json"))
    assert not os.path.exists(os.path.join(root, TASK, f"{OFF}-td3", "summary.json"))
    counter = {}
    with pytest.MonkeyPatch.context() as mp:
        count_calls(mp, phases, "make_offline_step", counter)
        records = sweep(root, config_fn)
    assert [r["status"] for r in records] == ["skipped", "skipped", "resumed"]
    assert "make_offline_step" not in counter
    files = {os.path.relpath(d, root): (read(os.path.join(d, "metrics.jsonl")), read(os.path.join(d, "summary.json")))
             for d in run_dirs(root)}
    assert files == reference["files"]
    assert [r["status"] for r in sweep(root, config_fn)] == ["skipped"] * 3
    with pytest.raises(ConfigError, match="another config"):  # finished runs are not mixed with other budgets
        sweep(root, config_fn, overrides=["online.steps=60"])


def test_fine_tunes_must_share_the_offline_settings(make_tiny_config, tmp_path):
    def config_fn(task, off, on):
        return make_tiny_config(off, on, **({"offline.steps": 100} if on == "td3" else {}))

    with pytest.raises(ConfigError, match="offline"):
        sweep(tmp_path, config_fn)
    assert os.listdir(tmp_path) == []  # checked before anything ran


def test_shards_split_the_offline_phases():
    tasks, offs = ["a", "b"], ["x", "y", "z"]
    parts = [groups(tasks, offs, parse_shard(f"{i}/4")) for i in range(4)]
    assert sorted(g for p in parts for g in p) == sorted((t, o) for t in tasks for o in offs)
    assert parts == [groups(tasks, offs, (i, 4)) for i in range(4)]
    for bad in ("4/4", "x", "1/0"):
        with pytest.raises(ConfigError):
            parse_shard(bad)
    # a name listed twice would run twice, and in two shards at once in one directory
    with pytest.raises(ConfigError, match="^--offline names x more than once$"):
        groups(tasks, ["x", "y", "x"], (0, 2))


def test_a_shard_with_nothing_to_run_is_refused(config_fn, tmp_path):
    with pytest.raises(ConfigError, match=r"^--shard 1/2: the grid has 1 task x offline-learner group\(s\)"):
        sweep(tmp_path / "s", config_fn, shard=(1, 2))
    assert not os.path.exists(tmp_path / "s")


def test_a_swept_field_that_changes_nothing_stops_the_sweep_before_its_pretrain(config_fn, tmp_path):
    root = tmp_path / "s"
    with pytest.raises(ConfigError, match="online.agent.init_temperature changes nothing"):
        with contextlib.redirect_stdout(io.StringIO()):  # SAC -> SAC hands the temperature over
            run_sweep([TASK], [OFF], ["sac"], str(root), config_fn, progress=False,
                      overrides=["vmap_sweep=online.agent.init_temperature=0.1,1"])
    assert not os.path.exists(os.path.join(root, TASK, OFF))  # no pretrain ran, no fine-tune was seeded


def test_an_interrupted_pretrain_resumes_under_other_online_settings(reference, config_fn, tmp_path):
    """The pretrain resumes with the online settings it started with; the fine-tunes take this
    command's (an online override is free in a sweep, whenever it is given)."""
    root = tmp_path / "sweep"
    with pytest.MonkeyPatch.context() as mp:  # killed inside the pretrain's third offline chunk
        count_calls(mp, phases, "make_offline_step", {}, kill_at=3)
        with pytest.raises(Killed):
            sweep(root, config_fn)
    records = sweep(root, config_fn, overrides=["online.agent.actor_lr=1e-3"])
    assert [r["status"] for r in records] == ["resumed", "ran", "ran"]
    pre = run_dirs(root)[0]
    assert reference["files"][os.path.relpath(pre, root)] == (read(os.path.join(pre, "metrics.jsonl")),
                                                              read(os.path.join(pre, "summary.json")))
    tune = json.load(open(os.path.join(run_dirs(root)[1], "config.json")))
    assert tune["online"]["agent"]["actor_lr"] == 1e-3


# -- the report ---------------------------------------------------------------------------------
def fake_run(root, task, off, on, online_scores):
    """A finished run with the given online evaluation scores (seeds, evaluations)."""
    wd = os.path.join(root, task, f"{off}-{on}")
    os.makedirs(wd)
    scores = np.asarray(online_scores, float)
    log = MetricsLog(os.path.join(wd, "metrics.jsonl"))
    for seed in range(scores.shape[0]):
        log.write([{"phase": "offline", "step": 10, "seed": seed, "eval_return": 0.0, "eval_score": 50.0}])
        log.write([{"phase": "online", "step": 5 * j, "seed": seed, "eval_return": 0.0, "eval_score": float(v)}
                   for j, v in enumerate(scores[seed])])
    agent = {"hidden_dims": [32, 32]}
    config = {"n_seeds": scores.shape[0], "dataset": {"id": f"{task}/data-v0"}, "eval": {"episodes": 1},
              "offline": {"learner": off, "steps": 10, "eval_every": 10, "agent": agent},
              "online": {"learner": on, "steps": 20, "eval_every": 5, "utd": 1, "agent": agent}}
    summary = {"metric": "eval_score", "offline_final": [50.0] * scores.shape[0],
               "online_final": scores[:, -1].tolist(), "transfer_drop": [max(0.0, 50 - s.min()) for s in scores]}
    for name, obj in (("config.json", config), ("summary.json", summary)):
        with open(os.path.join(wd, name), "w") as f:
            json.dump(obj, f)


def test_report_bolds_the_lowest_regret_of_each_column(tmp_path):
    root = str(tmp_path / "sweep")
    rng = np.random.default_rng(0)
    level = {("cql", "sac"): 80, ("smac", "sac"): 20, ("cql", "td3"): 40, ("smac", "td3"): 60}  # score: higher is better
    made = {}
    for task in ("t1", "t2"):
        for (off, on), v in level.items():
            made[task, off, on] = v + rng.normal(0, 2, (3, 5))
            fake_run(root, task, off, on, made[task, off, on])
    os.makedirs(os.path.join(root, "t1", "cql", "pretrain"))  # left out of the report
    for name in ("config.json", "summary.json", "metrics.jsonl"):
        shutil.copy(os.path.join(root, "t1", "cql-sac", name), os.path.join(root, "t1", "cql", "pretrain"))
    page = write_report(root, reps=200, date="2026-01-01")
    text = open(page).read()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in text.splitlines() if line.startswith("| cql |") or line.startswith("| smac |")}
    assert "| offline \\ online | sac | td3 |" in text
    assert rows["cql"][0].startswith("**") and not rows["smac"][0].startswith("**")  # sac: cql best
    assert rows["smac"][1].startswith("**") and not rows["cql"][1].startswith("**")  # td3: smac best
    assert "IQM" in rows["cql"][0] and "2026-01-01" in text and "| offline updates | 10 |" in text
    for name in ("report_regret.csv", "report_curves_t1.png", "report_curves_t1.csv", "report_curves_t2.png"):
        assert os.path.exists(os.path.join(root, name)), name
    assert "pretrain" not in text
    # per seed: 1 - (score - task min) / (task max - task min), averaged over the seed's evaluations
    with open(os.path.join(root, "report_regret_per_seed.csv")) as f:
        per_seed = list(csv.DictReader(f))
    assert len(per_seed) == 2 * 4 * 3
    for row in per_seed:
        task = row["task"]
        lo = min(v.min() for (t, *_), v in made.items() if t == task)
        hi = max(v.max() for (t, *_), v in made.items() if t == task)
        expected = np.mean(1 - (made[task, row["offline"], row["online"]][int(row["seed"])] - lo) / (hi - lo))
        assert float(row["regret"]) == pytest.approx(expected, rel=1e-12)
    first = [r for r in per_seed if (r["task"], r["offline"], r["online"]) == ("t1", "cql", "sac")]
    assert (f"| t1 | cql -> sac | 0: {float(first[0]['regret']):.3f}, 1: {float(first[1]['regret']):.3f}, "
            f"2: {float(first[2]['regret']):.3f} |") in text
    # An --out that is not a .md path is a directory: the page and its figures go inside it.
    page2 = write_report(root, out=os.path.join(root, "pages"), reps=200, date="2026-01-01")
    assert page2 == os.path.join(root, "pages", "report.md") and open(page2).read() == text
    assert os.path.exists(os.path.join(root, "pages", "report_regret.csv"))
    # an existing page is not replaced by accident; a file given as the directory is one line
    from smac_jax.errors import SmacJaxError
    with open(page, "w") as f:
        f.write("# my own page\n")
    with pytest.raises(SmacJaxError, match=r"report.md exists; pass --overwrite to replace it"):
        write_report(root, reps=200, date="2026-01-01")
    assert open(page).read() == "# my own page\n"
    assert open(write_report(root, reps=200, date="2026-01-01", overwrite=True)).read() == text
    with pytest.raises(SmacJaxError, match=r"--out .*report_regret.csv is a file, not a page ending in .md"):
        write_report(root, out=os.path.join(root, "report_regret.csv"), reps=200)


def test_report_follows_links_to_runs_kept_elsewhere(tmp_path):
    """A root of symbolic links to a subset of a sweep's runs reports exactly those runs."""
    sweep_root, subset = str(tmp_path / "sweep"), tmp_path / "subset"
    for off, v in (("cql", 80.0), ("smac", 20.0), ("iql", 50.0)):
        fake_run(sweep_root, "t1", off, "sac", np.full((2, 3), v))
    (subset / "t1").mkdir(parents=True)
    for off in ("cql", "smac"):
        os.symlink(os.path.join(sweep_root, "t1", f"{off}-sac"), subset / "t1" / f"{off}-sac")
    text = open(write_report(str(subset), reps=50, date="2026-01-01")).read()
    assert "t1: cql -> sac" in text and "t1: smac -> sac" in text and "iql" not in text
    # a run of another dataset linked into the task: refused, its scores would be normalised with the others'
    from smac_jax.errors import SmacJaxError
    fake_run(sweep_root, "t2", "iql", "sac", np.full((2, 3), 50.0))
    os.symlink(os.path.join(sweep_root, "t2", "iql-sac"), subset / "t1" / "iql-sac")
    with pytest.raises(SmacJaxError, match=r"task 't1' under .* holds runs on different datasets \(t1/data-v0 in .*, "
                                           r"t2/data-v0 in .*\)"):
        write_report(str(subset), reps=50, out=str(tmp_path / "mixed"))


def test_an_override_of_an_online_learners_own_field_reuses_a_pretrain_made_with_another(reference, config_fn,
                                                                                            tmp_path):
    """The pretrain was made by a sweep whose first online learner was SAC; a later sweep over
    TD3+BC with a TD3+BC-only override (policy_delay) still reuses it instead of failing on SAC's
    config, which has no such field."""
    root = tmp_path / "sweep"
    shutil.copytree(reference["root"], root)
    with contextlib.redirect_stdout(io.StringIO()):
        records = run_sweep([TASK], [OFF], ("td3bc",), str(root), config_fn, progress=False,
                            overrides=["online.agent.policy_delay=3"])
    assert [r["status"] for r in records] == ["skipped", "ran"]
    stored = json.load(open(os.path.join(root, TASK, f"{OFF}-td3bc", "config.json")))
    assert stored["online"]["agent"]["policy_delay"] == 3
    with pytest.raises(ConfigError, match="no field 'online.agent.nope'"):
        sweep(tmp_path / "other", config_fn, overrides=["online.agent.nope=1"])


def test_a_sweep_starts_from_another_roots_pretrain(reference, config_fn, tmp_path):
    """pretrain_from: the pretrain is copied from the other root, nothing offline runs again, and the
    fine-tune is byte-identical to the one of the original sweep; a root without a finished pretrain
    or other offline settings is refused before anything is written."""
    root = tmp_path / "other"
    counter = {}
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(io.StringIO()):
        count_calls(mp, phases, "make_offline_step", counter)
        records = run_sweep([TASK], [OFF], ("sac",), str(root), config_fn, progress=False,
                            pretrain_from=str(reference["root"]))
    assert [r["status"] for r in records] == ["skipped", "ran"] and "make_offline_step" not in counter
    for d in run_dirs(root)[:2]:
        rel = os.path.relpath(d, root)
        assert (read(os.path.join(d, "metrics.jsonl")), read(os.path.join(d, "summary.json"))) == reference["files"][rel]
    with pytest.raises(ConfigError, match="holds no finished pretrain"):
        sweep(tmp_path / "third", config_fn, pretrain_from=str(tmp_path / "nothing"))
    with pytest.raises(ConfigError, match=r"offline settings differ from the pretrain's \(offline.steps\)"):
        sweep(tmp_path / "third", config_fn, pretrain_from=str(reference["root"]), overrides=["offline.steps=100"])
    assert not os.path.exists(tmp_path / "third")



def test_report_refuses_two_runs_of_one_pair_in_a_task_and_names_a_run_root(tmp_path):
    """The report's tables hold one run per (task, pair): a second run of the pair (a root of links
    to two variants) is an error naming both, not a row that silently replaces the other; a pair
    with different seed counts across tasks is one line too; a run's own workdir as the root is a
    task named after its parent directory."""
    from smac_jax.errors import SmacJaxError

    sweep_root, subset = str(tmp_path / "sweep"), tmp_path / "subset"
    fake_run(sweep_root, "t1", "sac", "sac", np.full((2, 3), 50.0))
    fake_run(sweep_root, "t2", "sac", "sac", np.full((2, 3), 60.0))
    (subset / "t1").mkdir(parents=True)
    os.symlink(os.path.join(sweep_root, "t1", "sac-sac"), subset / "t1" / "a")
    os.symlink(os.path.join(sweep_root, "t2", "sac-sac"), subset / "t1" / "b")
    with pytest.raises(SmacJaxError, match=r"two finished runs of sac -> sac in task 't1' \(.*a and .*b\)"):
        write_report(str(subset), reps=50)
    fake_run(sweep_root, "t3", "cql", "sac", np.full((1, 3), 40.0))
    fake_run(sweep_root, "t4", "cql", "sac", np.full((2, 3), 40.0))
    with pytest.raises(SmacJaxError, match=r"method 'cql -> sac' has different numbers of seeds across environments"):
        write_report(sweep_root, reps=50)
    page = write_report(os.path.join(sweep_root, "t1", "sac-sac"), out=str(tmp_path / "one"), reps=50)
    assert "# Sweep report: t1" in open(page).read()
    page = write_report(os.path.join(sweep_root, "t1"), out=str(tmp_path / "two"), reps=50)  # a task's directory
    assert "# Sweep report: t1" in open(page).read() and os.path.exists(tmp_path / "two" / "report_curves_t1.png")
