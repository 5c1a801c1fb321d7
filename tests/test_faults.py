"""Fault injection: a run killed at any instant resumes to byte-identical results, and every bad
input or damaged file is one clear error with nothing lost.

Each kill scenario runs the tiny SAC -> SAC job (tests/conftest.py), stops it by raising
:class:`Killed` at a named point (a stand-in for the process being killed: it is not an
``Exception``, so nothing in the library catches it), resumes it with ``resume=True`` and
compares the full ``metrics.jsonl`` text and the final online checkpoint (parameters, optimiser
states, replay buffers) with an uninterrupted run's, bit for bit.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import REPO_ROOT, script_env

from smac_jax.data import replay
from smac_jax.errors import CheckpointMismatchError, ConfigError, DatasetError, DivergenceError, WorkdirError
from smac_jax.learners import make_learner
from smac_jax.training import pipeline
from smac_jax.training.checkpoint import Checkpointer
from smac_jax.training.logger import MetricsLog
from smac_jax.training.online import DeviceCollector, OnlineCollector

OBS_DIM, ACT_DIM = 3, 1


class Killed(BaseException):
    pass


def quiet_run(config, workdir, **kw):
    with contextlib.redirect_stdout(io.StringIO()):
        return pipeline.run(config, workdir, progress=False, **kw)


def final_online(config, workdir):
    learner = make_learner(config.online.learner, OBS_DIM, ACT_DIM, config.online.agent)
    keys = jax.random.split(jax.random.PRNGKey(0), config.n_seeds)
    template = {"states": jax.eval_shape(jax.vmap(learner.init), keys),
                "buffers": jax.eval_shape(lambda: pipeline.stack_seeds(
                    replay.empty_buffer(OBS_DIM, ACT_DIM, config.online.replay.capacity), config.n_seeds))}
    ck = Checkpointer(os.path.join(workdir, "checkpoints"))
    try:
        tree, meta = ck.restore("online", template, config.online.steps)
    finally:
        ck.close()
    return jax.tree.map(np.asarray, tree), meta


def metrics_text(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return f.read()


@pytest.fixture(scope="module")
def reference(make_tiny_config, tmp_path_factory):
    config = make_tiny_config()
    workdir = str(tmp_path_factory.mktemp("reference"))
    summary = quiet_run(config, workdir)
    return dict(config=config, workdir=workdir, summary=summary, metrics=metrics_text(workdir),
                final=final_online(config, workdir))


# -- kill points ------------------------------------------------------------------------------
def after_save(phase, step):
    def install(mp):
        orig = Checkpointer.save

        def save(self, ph, st, tree, meta=None):
            orig(self, ph, st, tree, meta)
            if (ph, st) == (phase, step):
                raise Killed(f"after saving {phase} {step}")

        mp.setattr(Checkpointer, "save", save)
    return install


def during_save(phase, step):
    """Killed while the checkpoint is being written: orbax's temporary directory is left behind
    and the step is never committed."""
    def install(mp):
        orig = Checkpointer.save

        def save(self, ph, st, tree, meta=None):
            if (ph, st) == (phase, step):
                junk = os.path.join(self.directory, ph, f"{st}.orbax-checkpoint-tmp-1234")
                os.makedirs(os.path.join(junk, "state"), exist_ok=True)
                with open(os.path.join(junk, "state", "partial"), "wb") as f:
                    f.write(b"\0" * 100)
                raise Killed(f"during the save of {phase} {step}")
            orig(self, ph, st, tree, meta)

        mp.setattr(Checkpointer, "save", save)
    return install


def after_rows(phase, step):
    """Killed right after the evaluation rows of (phase, step) were written, before any save."""
    def install(mp):
        orig = MetricsLog.write

        def write(self, rows):
            rows = list(rows)
            orig(self, rows)
            if rows and (rows[0]["phase"], rows[0]["step"]) == (phase, step):
                raise Killed(f"after writing {phase} {step} rows")

        mp.setattr(MetricsLog, "write", write)
    return install


def in_online_chunk(n):
    """Killed inside the n-th online chunk (the hand-over done, nothing online saved yet)."""
    def install(mp):
        count = {"chunks": 0}
        for cls in (OnlineCollector, DeviceCollector):
            def make(self, *a, _orig=cls.make_loop, **k):
                loop = _orig(self, *a, **k)

                def wrapped(*args):
                    count["chunks"] += 1
                    if count["chunks"] == n:
                        raise Killed(f"in online chunk {n}")
                    return loop(*args)
                return wrapped

            mp.setattr(cls, "make_loop", make)
    return install


KILLS = {
    "offline, after a checkpoint": after_save("offline", 100),
    "offline, during a save": during_save("offline", 100),
    "hand-over, first online chunk": in_online_chunk(1),
    "online, after the evaluation before a save": after_rows("online", 60),
    "online, during a save": during_save("online", 60),
    "online, after a checkpoint": after_save("online", 60),
}


def run_until_killed(config, workdir, install, resume=False):
    """Run with the kill point ``install`` in place; the run must end in :class:`Killed`."""
    with pytest.MonkeyPatch.context() as mp:
        install(mp)
        with pytest.raises(Killed):
            quiet_run(config, workdir, resume=resume)


@pytest.mark.parametrize("where", list(KILLS))
def test_kill_and_resume_is_bit_identical(reference, where, tmp_path):
    _check_kill_and_resume(reference, where, tmp_path)


@pytest.fixture(scope="module")
def jax_env_reference(make_tiny_config, tmp_path_factory):
    """The reference run with the online environments on the device (online.env='jax')."""
    pytest.importorskip("gymnax")
    config = make_tiny_config(**{"online.env": "jax"})
    workdir = str(tmp_path_factory.mktemp("jax_env_reference"))
    summary = quiet_run(config, workdir)
    return dict(config=config, workdir=workdir, summary=summary, metrics=metrics_text(workdir),
                final=final_online(config, workdir))


@pytest.mark.parametrize("where", ["hand-over, first online chunk", "online, after the evaluation before a save",
                                   "online, after a checkpoint"])
def test_jax_env_run_killed_resumes_bit_identical(jax_env_reference, where, tmp_path):
    """The JAX-native environments' states travel in the checkpoint: a resumed run steps them on exactly."""
    _check_kill_and_resume(jax_env_reference, where, tmp_path)


def _check_kill_and_resume(reference, where, tmp_path):
    config = reference["config"]
    workdir = str(tmp_path / "run")
    run_until_killed(config, workdir, KILLS[where])
    summary = quiet_run(config, workdir, resume=True)
    assert metrics_text(workdir) == reference["metrics"]
    got, meta = final_online(config, workdir)
    ref, ref_meta = reference["final"]
    assert meta == ref_meta  # the environments' state included
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(got)[0], jax.tree.leaves(ref)):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
    assert summary == reference["summary"]


def test_resume_twice_after_the_offline_phase_is_idempotent(reference, tmp_path):
    """A run killed twice in the window between the offline phase and the first online
    checkpoint resumes every time (the final offline checkpoint is not saved again)."""
    config = reference["config"]
    workdir = str(tmp_path / "run")
    for attempt in range(2):
        run_until_killed(config, workdir, in_online_chunk(1), resume=attempt > 0)
    quiet_run(config, workdir, resume=True)
    assert metrics_text(workdir) == reference["metrics"]


# -- damaged files ------------------------------------------------------------------------------
def test_torn_last_metrics_line_is_dropped_with_a_warning(reference, tmp_path):
    config = reference["config"]
    workdir = str(tmp_path / "run")
    run_until_killed(config, workdir, after_save("online", 60))
    with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
        f.write('{"phase": "online", "step": 1')  # a write cut short
    with pytest.warns(UserWarning, match="torn last line"):
        quiet_run(config, workdir, resume=True)
    assert metrics_text(workdir) == reference["metrics"]


def test_corrupt_metrics_line_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"phase": "offline", "step": 1}\nnot json\n{"phase": "offline", "step": 2}\n')
    with pytest.raises(Exception, match=r"line 2 is not valid JSON"):
        MetricsLog(str(path))


def damage(directory):
    """Overwrite every file below ``directory`` with garbage."""
    for root, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(reference, tmp_path):
    config = reference["config"]
    workdir = str(tmp_path / "run")
    run_until_killed(config, workdir, after_save("offline", 200))
    # Damage every file of the latest offline checkpoint (step 200).
    damage(os.path.join(workdir, "checkpoints", "offline", "200"))
    with pytest.warns(UserWarning, match=r"offline checkpoint at step 200 .* falling back .* step 100"):
        quiet_run(config, workdir, resume=True)
    assert metrics_text(workdir) == reference["metrics"]
    assert os.path.isdir(os.path.join(workdir, "checkpoints", "offline_unreadable", "200"))


def test_unreadable_only_checkpoint_is_one_clear_error(tmp_path):
    ck = Checkpointer(str(tmp_path))
    ck.save("online", 5, {"x": np.zeros(3, np.float32)}, {"step": 5})
    ck.close()
    damage(tmp_path / "online" / "5")
    ck = Checkpointer(str(tmp_path))
    with pytest.raises(CheckpointMismatchError, match=r"online checkpoint at step 5 .* (cannot be read|does not match)"):
        ck.restore("online", {"x": np.zeros(3, np.float32)})
    ck.close()


# -- never overwrite a run ----------------------------------------------------------------------
def snapshot(workdir):
    out = {}
    for root, _, files in os.walk(workdir):
        for name in files:
            p = os.path.join(root, name)
            with open(p, "rb") as f:
                out[os.path.relpath(p, workdir)] = f.read()
    return out


def test_existing_run_is_never_modified_without_resume_or_overwrite(reference, make_tiny_config, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(reference["workdir"], workdir)
    before = snapshot(workdir)
    for cfg in (reference["config"], make_tiny_config(**{"offline.steps": 100})):
        with pytest.raises(WorkdirError, match=r"already holds a run .* pass --resume .* --overwrite"):
            quiet_run(cfg, workdir)
    assert snapshot(workdir) == before
    with pytest.raises(ConfigError, match="holds a different config"):
        quiet_run(make_tiny_config(**{"offline.steps": 100}), workdir, resume=True)
    assert snapshot(workdir) == before
    with pytest.raises(ConfigError, match="not both"):
        quiet_run(reference["config"], workdir, resume=True, overwrite=True)
    # --overwrite replaces the run with the new one.
    cfg = make_tiny_config(**{"offline.steps": 100, "offline.ckpt_every": 50})
    quiet_run(cfg, workdir, overwrite=True)
    rows = [json.loads(line) for line in metrics_text(workdir).splitlines()]
    assert max(r["step"] for r in rows if r["phase"] == "offline") == 100
    assert not os.path.exists(os.path.join(workdir, "checkpoints", "offline", "200"))


def test_a_resume_on_other_data_is_refused_and_the_run_left_alone(reference, tmp_path):
    """A dataset regenerated (or edited) under the same id since the run started would continue the run
    on other data: the run's dataset.json holds the data's fingerprint, and a resume that loads other
    data stops with one line, touching nothing."""
    import dataclasses

    from smac_jax.data.dataset import load_dataset_from_config

    workdir = str(tmp_path / "run")
    shutil.copytree(reference["workdir"], workdir)
    record = json.load(open(os.path.join(workdir, pipeline.DATASET_FILE)))
    dataset = load_dataset_from_config(reference["config"].dataset)
    assert record["fingerprint"] == dataset.fingerprint() == load_dataset_from_config(reference["config"].dataset).fingerprint()
    edited = dataclasses.replace(dataset, transitions=dataset.transitions.replace(
        reward=dataset.transitions.reward.copy() + np.float32(0.5) * (np.arange(len(dataset.transitions.reward)) == 7)))
    assert edited.fingerprint() != record["fingerprint"]
    with pytest.raises(DatasetError, match=rf"^--resume: dataset '{reference['config'].dataset.id}' is not the data "
                                           r"this run started on .*different contents\); continuing would train"):
        pipeline._check_same_dataset(workdir, edited, resume=True)
    # end to end: the run recorded other data than the dataset now holds
    with open(os.path.join(workdir, pipeline.DATASET_FILE), "w") as f:
        json.dump({**record, "fingerprint": edited.fingerprint()}, f)
    before = snapshot(workdir)
    with pytest.raises(DatasetError, match="is not the data this run started on"):
        quiet_run(reference["config"], workdir, resume=True)
    assert snapshot(workdir) == before
    # a run from before the record existed resumes and gets one
    os.remove(os.path.join(workdir, pipeline.DATASET_FILE))
    assert quiet_run(reference["config"], workdir, resume=True) == reference["summary"]
    assert json.load(open(os.path.join(workdir, pipeline.DATASET_FILE))) == record


def test_unwritable_workdir_is_one_clear_error(make_tiny_config, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(WorkdirError, match="cannot write to workdir"):
        quiet_run(make_tiny_config(), str(blocker / "run"))


def test_a_workdir_another_process_runs_is_refused_and_left_alone(make_tiny_config, tmp_path):
    """A second launch on a workdir whose run is still going (a requeued job) stops with one line
    before writing anything: it held the same checkpoints and wrote the same metrics rows twice."""
    import fcntl

    config = make_tiny_config(**{"offline.steps": 50, "offline.ckpt_every": 50, "online.steps": 0})
    wd = str(tmp_path / "run")
    os.makedirs(wd)
    with open(os.path.join(wd, "config.json"), "w") as f:  # the running process's run, as it wrote it
        f.write(pipeline._config_json(config))
    held = os.open(wd, os.O_RDONLY)  # what the running process holds
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with pytest.raises(WorkdirError, match=r"workdir .* is in use by another process running it"):
            quiet_run(config, wd, resume=True)
        assert sorted(os.listdir(wd)) == ["config.json"]
    finally:
        os.close(held)
    summary = quiet_run(config, wd, resume=True)  # released: the run goes on
    assert json.load(open(os.path.join(wd, "summary.json"))) == summary
    assert not [f for f in os.listdir(wd) if ".tmp-" in f]  # written whole, through a temporary file


def test_sweep_and_compare_set_each_field_once():
    from smac_jax.cli import check_set_once
    from smac_jax.errors import SmacJaxError

    check_set_once(["online.agent.critic_lr=1e-4", "online.steps=10"])
    with pytest.raises(SmacJaxError, match=r"--set online.agent.critic_lr given more than once"):
        check_set_once(["online.agent.critic_lr=1e-4", "online.steps=10", "online.agent.critic_lr=3e-3"])
    # sweep.py's --n_seeds sets n_seeds: a --set of it would win without a word
    with pytest.raises(SmacJaxError, match=r"^--set n_seeds: set by this script's own flag --n_seeds; use that flag"):
        check_set_once(["n_seeds=0"], own_flags=("n_seeds",))


# -- bad configs --------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, match", [
    ({"offline.agent.batch_size": 0}, r"offline\.agent: learner 'sac': batch_size=0 must be >= 1"),
    ({"offline.agent.batch_size": 5000}, r"offline\.agent\.batch_size=5000 must be between 1 and the dataset's 1000"),
    ({"online.agent.batch_size": 2000}, r"online\.agent\.batch_size=2000 must be between 1 and online\.replay\.capacity"),
    ({"offline.agent.hidden_dims": (0, 0)}, r"hidden_dims=\(0, 0\) must be one or more integer layer widths"),
    ({"offline.agent.critic_lr": -1.0}, r"critic_lr=-1\.0 must be a finite learning rate > 0"),
    ({"online.agent.actor_lr": float("inf")}, r"actor_lr=inf must be a finite learning rate > 0"),
    ({"offline.agent.gamma": 1.5}, r"gamma=1\.5 must be in \(0, 1\]"),
    ({"online.agent.optimizer": "sgd"}, r"optimizer='sgd' must be one of"),
    ({"offline.agent.muon_scope": "input"}, r"muon_scope='input' must be one of"),
    ({"eval.episodes": 0}, r"eval\.episodes must be >= 1"),
    ({"eval.env": "brax"}, r"eval\.env must be one of \('gymnasium', 'jax'\), got 'brax'"),
    ({"online.replay.capacity": 0}, r"online\.replay\.capacity must be >= 1"),
    ({"online.critic_warmup": -5}, r"online\.critic_warmup must be >= 0, got -5"),
    ({"offline.ckpt_every": 0}, r"offline\.ckpt_every must be > 0, got 0"),
    ({"seed": -1}, r"seed must be >= 0 \(environments take non-negative seeds\), got -1"),
    ({"dataset.gamma": 2.0}, r"dataset\.gamma must be in \(0, 1\], got 2\.0"),
    ({"ref_min_score": 5.0, "ref_max_score": 5.0}, r"ref_max_score \(5\.0\) must be above ref_min_score \(5\.0\)"),
    ({"offline.agent.hidden_dims": (32.5, 32)}, r"hidden_dims=\(32\.5, 32\) must be one or more integer layer widths"),
    pytest.param({"ref_max_score": 100.0}, r"ref_min_score \(None\) and ref_max_score \(100\.0\): give both or neither",
                 id="ref-max-alone"),
    pytest.param({"ref_min_score": -math.inf, "ref_max_score": math.inf}, r"must be finite numbers", id="ref-infinite"),
    pytest.param({"dataset.generate_seed": -1}, r"dataset\.generate_seed must be >= 0, got -1", id="generate-seed"),
    pytest.param({"online.agent.batch_size": 2500, "online.replay.init": "full"},
                 r"online\.agent\.batch_size=2500 must be between 1 and online\.replay\.capacity=1000 plus the dataset's "
                 r"1000 rows", id="batch-beyond-full-buffer"),
])

def test_bad_config_values_are_named(make_tiny_config, tmp_path, overrides, match):
    cfg = make_tiny_config(**overrides)
    with pytest.raises(ConfigError, match=match):
        quiet_run(cfg, str(tmp_path / "run"))
    # a start that failed writes nothing, so the corrected command runs without --overwrite
    assert not os.path.exists(tmp_path / "run" / "config.json")

def test_a_batch_larger_than_the_capacity_fits_a_full_buffer(make_tiny_config):
    """With ``full`` the online buffer holds the dataset's rows too: a batch above the capacity alone is fine."""
    config = make_tiny_config(**{"online.agent.batch_size": 1500, "online.replay.init": "full"})
    pipeline.check_batch_sizes(config, 1000)


def test_learner_checks_come_before_anything_is_written_or_fitted(make_tiny_config, tmp_path):
    """A saved score model or C-VAE the run would load that was fitted with other settings, and a
    pair the online learner cannot take over from (SAMG-IQL guides with the offline value network,
    which CQL has not; ACA needs a Gaussian source), stop before the workdir is written and before
    any model is fitted."""
    from smac_jax.errors import TransferError

    def saved_model(name, fname, config):
        path = tmp_path / name
        path.mkdir()
        (path / fname).write_text(json.dumps({"config": config, "meta": {}}))
        return str(path)

    cases = [
        (make_tiny_config("cql", "samg_iql"), TransferError,
         r"^cql -> samg_iql: samg_iql guides its targets with the offline learner's frozen 'value', and cql has none$"),
        (make_tiny_config("td3bc", "aca"), TransferError,  # the hand-over on shapes, before the workdir
         r"^td3bc -> aca: ACA aligns its critic with the log-density of a stochastic"),
        (make_tiny_config("iql", "samg_iql", **{"online.agent.cvae_path": saved_model("cvae", "cvae.json", {})}),
         ConfigError, r"^the C-VAE at .*/cvae was fitted with dataset_id=None, but this run has dataset_id="),
        (make_tiny_config("smac", "sac", **{"offline.agent.score_model_path": saved_model("score", "score_model.json", {})}),
         ConfigError, r"^score model at .*/score was fitted with dataset_id=None, but this run has dataset_id="),
        # pairs whose learners fit a model first (SMAC's score model, SAMG's C-VAE): checked on unfitted
        # stand-ins of the same shapes, not after minutes of fitting
        (make_tiny_config("smac", "sac", **{"online.agent.hidden_dims": (16, 16)}), TransferError,
         r"^smac -> sac: parameter group '(actor|critic)' differs in shape: "),
        (make_tiny_config("iql", "samg_iql", **{"online.agent.hidden_dims": (16, 16)}), TransferError,
         r"^iql -> samg_iql: parameter group '(actor|critic|value)' differs in shape: "),
    ]
    for i, (cfg, error, match) in enumerate(cases):
        wd = tmp_path / f"run{i}"
        with pytest.raises(error, match=match):
            quiet_run(cfg, str(wd))
        assert not wd.exists() or not os.listdir(wd)


def test_unused_lr_key_is_rejected(make_tiny_config, tmp_path):
    cfg = make_tiny_config()
    cfg.unlock()  # the task config is locked (tests/test_config_checks.py); one built another way is not
    cfg.offline.agent.lr = 1e-4  # there is no single "lr": every learner has per-network *_lr
    with pytest.raises(ConfigError, match=r"'lr' is not a hyperparameter of learner 'sac'"):
        quiet_run(cfg, str(tmp_path / "run"))


def test_non_finite_optimizer_state_is_caught_before_saving():
    learner = make_learner("sac", OBS_DIM, ACT_DIM, {"hidden_dims": (4, 4)})
    states = jax.vmap(learner.init)(jax.random.split(jax.random.PRNGKey(0), 2))
    pipeline.check_finite_state(states, "online", learner, 7)
    mu = states.opt_state["critic"][0].mu
    bad_mu = jax.tree.map(lambda x: x.at[1].set(np.inf), mu)
    bad = states.replace(opt_state={**states.opt_state,
                                    "critic": (states.opt_state["critic"][0]._replace(mu=bad_mu),
                                               *states.opt_state["critic"][1:])})
    with pytest.raises(DivergenceError, match=r"optimizer state/critic/.* is not finite at step 7 for seed index\(es\) \[1\]"):
        pipeline.check_finite_state(bad, "online", learner, 7)


# -- launch scripts: one line, exit status 2 ----------------------------------------------------
def test_a_bad_environment_argument_stops_before_the_run(make_tiny_config, tmp_path):
    """dataset.env_kwargs with a value the environment cannot step with (Pendulum's g as a string):
    one line naming the field before the workdir is written, not a traceback at the first evaluation."""
    from smac_jax.errors import DatasetError

    config = make_tiny_config(**{"dataset.env_kwargs": {"g": "x"}})
    with pytest.raises(DatasetError, match=r"cannot be built with dataset\.env_kwargs=\{'g': 'x'\}") as e:
        pipeline.run(config, str(tmp_path / "w"), progress=False)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("argv, match", [
    (["experiments/o2o.py", "--config=configs/o2o.py:pendulum", "--config.offline.stepz=1", "--workdir=W"],
     r"^error: unknown config key 'offline\.stepz' \(did you mean 'steps'\?\)$"),
    (["experiments/o2o.py", "--config=configs/o2o.py:pendulum"], r"^error: .*--workdir"),
    (["experiments/o2o.py", "--config=configs/o2o.py:pendulum", "--config.seed=1", "--config.seed=2", "--workdir=W"],
     r"^error: --config\.seed given more than once; give each config field once$"),
    (["experiments/o2o.py", "--config=configs/o2o.py:nope", "--workdir=W"],
     r"^error: flag --config=configs/o2o.py:nope: unknown task 'nope'; known: pendulum, .*d4rl-door-binary"),
    (["experiments/smoke_task.py", "--task=nope"], r"^error: --task: unknown task 'nope'; known: pendulum"),
    (["experiments/make_dataset.py", "--kinds=medium,bogus"], r"^error: --kinds: unknown dataset kind\(s\) \['bogus'\]"),
    (["experiments/benchmark.py", "--seeds=0"], r"^error: --seeds / --online_seeds must be integers >= 1"),
    (["experiments/ensemble_layout.py", "--runs=td3bc:1:0:8"], r"^error: --runs: 'td3bc:1:0:8' is not learner:seeds:rounds:updates"),
    (["experiments/train_score_model.py", "--out=X", "--steps=0"], r"^error: --steps must be >= 1"),
    (["experiments/score_policy.py", "--out=W", "--ws=0,2"], r"^error: --steps and --widths must be >= 1 and every --ws"),
    (["experiments/score_policy.py", "--out=W", "--task=nope"], r"^error: --task: unknown task 'nope'"),
    (["experiments/cvae_check.py", "--out=W", "--decoder_action=maybe"], r"^error: --decoder_action takes true / false"),
    (["experiments/o2o.py", "--config=configs/nothere.py:pendulum", "--workdir=W"],
     r"^error: --config: the config file could not be loaded \(.*No such file or directory: 'configs/nothere\.py'\)"),
    (["experiments/o2o.py", "--config=configs/o2o.py:pendulum,sac,sac,td3", "--workdir=W"],
     r"expected TASK\[,OFFLINE\[,ONLINE\]\], got 4 parts$"),
    (["experiments/o2o.py", "--config=configs/o2o.py:pendulum", "--config.seed=-1", "--workdir=W"],
     r"^error: seed must be >= 0"),  # before the task's dataset would be generated
    (["experiments/make_dataset.py", "--env=NoSuchEnv-v0", "--kinds=random"],
     r"^error: dataset factory: cannot make environment 'NoSuchEnv-v0': .*doesn't exist"),
    (["experiments/report.py", "--root=W", "--reps=0"], r"^error: flag --reps=0: 0 is not a positive integer$"),
    (["experiments/compare.py", "--root=W", "--only_report"], r"^error: no finished runs under .* nothing to report"),
    pytest.param(["experiments/report.py", "--root=W", "stray"], r"^error: unexpected argument\(s\) stray: ", id="stray-arg"),
    pytest.param(["experiments/o2o.py", "--config=configs/o2o.py:pendulum", "--workdir=W", "--overwrite", "false"],
                 r"^error: unexpected argument\(s\) false: ", id="stray-bool-value"),
    pytest.param(["experiments/make_dataset.py", "--kinds=random", "--seed=-1"], r"^error: --seed must be >= 0, got -1$",
                 id="negative-dataset-seed"),
    pytest.param(["experiments/value_check.py", "--workdir=W", "--eval_seed=-1"], r"^error: --eval_seed must be >= 0",
                 id="negative-eval-seed"),
    pytest.param(["experiments/train_score_model.py", "--out=W", "--eval_w=nan"], r"^error: --eval_w must be in \[0, 1\]",
                 id="eval-w-nan"),
    pytest.param(["experiments/sweep.py", "--root=W", "--offline="], r"^error: --offline is empty", id="empty-list"),
    # fields the config argument sets with the task's and learners' settings: an override would change them alone
    pytest.param(["experiments/o2o.py", "--workdir=W", "--config.online.learner=td3"],
                 r"^error: --config.online.learner: set by the config argument.*TASK,OFFLINE,ONLINE, its ONLINE\)$",
                 id="o2o-learner-override"),
    pytest.param(["experiments/o2o.py", "--workdir=W", "--config.task=hopper"],
                 r"^error: --config.task: set by the config argument.*its TASK\)$", id="o2o-task-override"),
    pytest.param(["experiments/sweep.py", "--root=W", "--set=offline.learner=cql"],
                 r"^error: --set offline.learner: set by this script's own flag --offline; use that flag$",
                 id="sweep-learner-set"),
    pytest.param(["experiments/compare.py", "--root=W", "--set=task=hopper"],
                 r"^error: --set task: set by this script's own flag --task; use that flag$", id="compare-task-set"),
    pytest.param(["experiments/smoke_task.py", "--task=pendulum", "--episodes=1", "--episode_steps=5"],
                 r"^error: --episodes x --episode_steps must be >= 16", id="smoke-too-small"),
    pytest.param(["experiments/landscape.py", "--workdirs=W", "--out=W", "--seed_index=1"],
                 r"^error: --seed_index=1 picks the seed whose actors span a plane: it needs --plane", id="seed-index-alone"),
    pytest.param(["experiments/check_jax_envs.py", "--envs=Ant-v5"], r"^error: --envs: \['Ant-v5'\] have no JAX-native port",
                 id="check-jax-envs-unported"),
    pytest.param(["experiments/benchmark.py", "--device_env_seeds=1", "--device_env_id=Ant-v5"],
                 r"^error: --device_env_id: Ant-v5 has no JAX-native port", id="device-env-unported"),
    pytest.param(["experiments/benchmark.py", "--json=/nonexistent_dir/x.json"], r"^error: --json=/nonexistent_dir/x.json: "
                 "its directory does not exist", id="json-dir"),
])
def test_launch_scripts_print_one_line(argv, match, tmp_path):
    argv = [a.replace("=W", f"={tmp_path / 'w'}") for a in argv]
    proc = subprocess.run([sys.executable, *argv], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env=script_env())
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert __import__("re").search(match, lines[0]), lines[0]


# -- damaged or mismatched datasets -------------------------------------------------------------
def copy_dataset(minari_store, src_id, dst_id):
    dst = os.path.join(minari_store, *dst_id.split("/"))
    shutil.copytree(os.path.join(minari_store, *src_id.split("/")), dst)
    meta_path = os.path.join(dst, "data", "metadata.json")
    with open(meta_path) as f:
        meta = json.load(f)
    meta["dataset_id"] = dst_id
    return dst, meta_path, meta


def test_truncated_hdf5_is_one_clear_error(make_tiny_config, minari_store, pendulum_dataset_id, tmp_path):
    dst, meta_path, meta = copy_dataset(minari_store, pendulum_dataset_id, "test/pendulum/truncated-v0")
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    data = os.path.join(dst, "data", "main_data.hdf5")
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    cfg = make_tiny_config(**{"dataset.id": "test/pendulum/truncated-v0"})
    with pytest.raises(pipeline.DatasetError, match=r"truncated-v0: the dataset's files cannot be read .*`minari delete"):
        quiet_run(cfg, str(tmp_path / "run"))


def test_dataset_that_does_not_fit_its_environment(make_tiny_config, minari_store, pendulum_dataset_id, tmp_path):
    _, meta_path, meta = copy_dataset(minari_store, pendulum_dataset_id, "test/pendulum/wrong-env-v0")
    for key in ("env_spec", "eval_env_spec"):
        spec = json.loads(meta[key])
        spec.update(id="MountainCarContinuous-v0",
                    entry_point="gymnasium.envs.classic_control.continuous_mountain_car:Continuous_MountainCarEnv")
        meta[key] = json.dumps(spec)
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    cfg = make_tiny_config(**{"dataset.id": "test/pendulum/wrong-env-v0"})
    with pytest.raises(pipeline.DatasetError, match=r"wrong-env-v0: (its environment cannot be built|the data has observations of 3)"):
        quiet_run(cfg, str(tmp_path / "run"))


def test_kill_during_the_score_model_fit_and_save(make_tiny_config, tmp_path):
    """SMAC: a run killed while its score model is being saved (the state written, its
    description not yet) resumes to the uninterrupted run's numbers."""
    from smac_jax.score import train as score_train

    cfg = make_tiny_config("smac", "sac", **{
        "offline.steps": 100, "offline.ckpt_every": 50, "online.steps": 60,
        "offline.agent.score_config.steps": 20, "offline.agent.score_config.hidden_dim": 16,
        "offline.agent.score_config.n_blocks": 1})
    ref_dir = str(tmp_path / "ref")
    quiet_run(cfg, ref_dir)
    # Killed after the fit, while saving: the state is written, its description is not. (A kill
    # during the fit itself leaves nothing of the score model behind, the same start again.)
    workdir = str(tmp_path / "run")
    with pytest.MonkeyPatch.context() as mp:
        orig = score_train.sm.save_score_model

        def killed_save(path, state, config, meta, **kw):
            orig(path, state, config, meta, **kw)
            os.remove(os.path.join(path, "score_model.json"))
            raise Killed("during the score-model save")
        mp.setattr(score_train.sm, "save_score_model", killed_save)
        with pytest.raises(Killed):
            quiet_run(cfg, workdir)
    quiet_run(cfg, workdir, resume=True)
    assert metrics_text(workdir) == metrics_text(ref_dir)


def test_generate_with_an_id_the_generator_does_not_write(make_tiny_config):
    from smac_jax.training.dataset_factory import ensure_dataset

    cfg = make_tiny_config(**{"dataset.id": "someone/pendulum/expert-v3", "dataset.generate": True})
    with pytest.raises(pipeline.DatasetError, match=r"the generator writes Pendulum-v1 'medium-replay' as "
                                                    r"'smac_jax/pendulum/medium-replay-v0'"):
        ensure_dataset(cfg.dataset)


def test_a_run_whose_learning_never_starts_says_so(make_tiny_config, tmp_path, capsys):
    config = make_tiny_config(**{"offline.steps": 50, "online.steps": 20, "online.learning_starts": 20,
                                 "online.eval_every": 20, "online.ckpt_every": 20})
    pipeline.run(config, str(tmp_path / "run"), progress=False)
    assert "online.learning_starts=20 >= online.steps=20" in capsys.readouterr().out
