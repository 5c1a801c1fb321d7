"""Settings x seeds in one program (``config.vmap_sweep``, smac_jax.training.vmap_sweep): each setting
of a swept run computes what a plain run with its values computes, a killed swept run resumes to
the same numbers, and a field that cannot vary per lane is named before anything runs."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config
from test_drop_analysis import run_script

from smac_jax.analysis import landscape as ls
from smac_jax.analysis.compare import load_labelled
from smac_jax.analysis.report import write_report
from smac_jax.data import replay
from smac_jax.errors import ConfigError, DivergenceError
from smac_jax.learners import make_learner, resolve_config
from smac_jax.learners.sac import SAC
from smac_jax.learners.swept import Swept, check_sweepable
from smac_jax.training import pipeline, vmap_sweep
from smac_jax.training.checkpoint import Checkpointer
from smac_jax.training.sweep import run_sweep

# offline critic_lr: 3e-4 (the default) and 1e-3; online actor_lr 1e-4 (default 3e-4): 2 settings x 2 seeds
SPEC = "offline.agent.critic_lr=3e-4,1e-3; online.agent.actor_lr=1e-4"
BUDGET = {"offline.steps": 100, "offline.ckpt_every": 50, "online.steps": 60, "online.eval_every": 30,
          "online.ckpt_every": 30}


class Killed(BaseException):
    """Stands in for the process being killed."""


def quiet_run(config, workdir, resume=False):
    with contextlib.redirect_stdout(io.StringIO()):
        return pipeline.run(config, workdir, resume=resume, progress=False)


def rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def assert_rows_close(a, b, rtol=1e-4):
    assert len(a) == len(b) > 0
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k in ra:
            if isinstance(ra[k], float):
                assert np.isclose(ra[k], rb[k], rtol=rtol, atol=1e-4), (k, ra, rb)
            else:
                assert ra[k] == rb[k], (k, ra, rb)


def swept_run(dataset_id, tmp_path_factory, spec, name):
    """A finished swept run of ``spec`` at the tests' budget: (config, workdir, summary)."""
    config = tiny_config(dataset_id, vmap_sweep=spec, **BUDGET)
    workdir = str(tmp_path_factory.mktemp(name))
    return config, workdir, quiet_run(config, workdir)


@pytest.fixture(scope="module")
def swept(pendulum_dataset_id, tmp_path_factory):
    return swept_run(pendulum_dataset_id, tmp_path_factory, SPEC, "swept")


def test_each_setting_computes_what_a_run_of_its_values_computes(swept, tmp_path):
    config, workdir, summary = swept
    assert [s["values"] for s in summary["settings"]] == [
        {"offline.agent.critic_lr": 3e-4, "online.agent.actor_lr": 1e-4},
        {"offline.agent.critic_lr": 1e-3, "online.agent.actor_lr": 1e-4}]
    # the last setting's lanes (2, 3) against a plain run of its values: its seeds' keys, initial
    # networks, minibatches and evaluation episodes, and the values bound into its programs
    plain_cfg = vmap_sweep.parse(config).setting_config(config, 1)
    assert plain_cfg.offline.agent.critic_lr == 1e-3 and plain_cfg.online.agent.actor_lr == 1e-4
    assert not plain_cfg.vmap_sweep
    plain = quiet_run(plain_cfg, str(tmp_path))
    setting_dir = os.path.join(workdir, "settings", "1")
    assert_rows_close(rows(os.path.join(setting_dir, "metrics.jsonl")), rows(tmp_path / "metrics.jsonl"))
    with open(os.path.join(setting_dir, "config.json")) as f, open(tmp_path / "config.json") as g:
        assert f.read() == g.read()
    with open(os.path.join(setting_dir, "summary.json")) as f:
        mine = json.load(f)
    assert summary["settings"][1] == {"setting": 1, "values": summary["settings"][1]["values"], **mine}
    assert np.allclose(mine["online_final"], plain["online_final"], rtol=1e-4)
    # the two settings share their seeds but not their values: their numbers differ
    r0, r1 = (rows(os.path.join(workdir, "settings", str(k), "metrics.jsonl")) for k in (0, 1))
    assert [r["seed"] for r in r0] == [r["seed"] for r in r1]
    assert not np.allclose([r["eval_return"] for r in r0], [r["eval_return"] for r in r1])
    for name in ("eval.png", "summary.json", "config.json"):
        assert os.path.exists(os.path.join(workdir, name))
    assert not os.path.exists(os.path.join(workdir, "metrics.jsonl"))
    # the sensitivity figure's data: every setting's per-seed results from its summary
    with open(os.path.join(workdir, "settings.csv")) as f:
        table = list(csv.DictReader(f))
    assert [(int(r["setting"]), int(r["seed_index"])) for r in table] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for r in table:
        s = summary["settings"][int(r["setting"])]
        assert float(r["offline.agent.critic_lr"]) == s["values"]["offline.agent.critic_lr"]
        for key in ("offline_final", "online_final", "transfer_drop"):
            assert float(r[key]) == pytest.approx(s[key][int(r["seed_index"])])
    assert os.path.getsize(os.path.join(workdir, "sensitivity.png")) > 10_000
    # the checkpoint analyses read settings/1 as that plain run: its lanes of the sweep's checkpoints
    assert_same_checkpoints(setting_dir, str(tmp_path))
    with pytest.raises(ls.LandscapeInputError, match="analyse one setting at a time as .*settings/<k>"):
        ls.read_run_config(workdir)


def assert_same_checkpoints(setting_dir, plain_dir):
    """Every checkpoint of a swept run's setting, read through ``settings/<k>``, holds the actor and
    critic of the plain run of its values."""
    for phase in ("offline", "online"):
        steps = ls.checkpoint_steps(setting_dir, phase)
        assert steps == ls.checkpoint_steps(plain_dir, phase) and steps
        for step in steps:
            _, _, mine = ls.load_params(setting_dir, phase, step, ("actor", "critic"))
            _, _, ref = ls.load_params(plain_dir, phase, step, ("actor", "critic"))
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5), mine, ref)


def kill_resume_and_compare(run, killed_at, workdir, monkeypatch):
    """Run ``run``'s config in ``workdir``, killed right after saving the checkpoint ``killed_at``
    (phase, step), resume it, and check every setting's rows equal the uninterrupted run's."""
    config, uninterrupted, _ = run
    orig = Checkpointer.save

    def save(self, phase, step, tree, meta=None):
        orig(self, phase, step, tree, meta)
        if (phase, step) == killed_at:
            raise Killed()

    monkeypatch.setattr(Checkpointer, "save", save)
    with pytest.raises(Killed):
        quiet_run(config, str(workdir))
    monkeypatch.setattr(Checkpointer, "save", orig)
    quiet_run(config, str(workdir), resume=True)
    for k in range(vmap_sweep.parse(config).n_settings):
        assert rows(os.path.join(workdir, "settings", str(k), "metrics.jsonl")) == \
            rows(os.path.join(uninterrupted, "settings", str(k), "metrics.jsonl"))


def test_a_killed_swept_run_resumes_to_the_same_numbers(swept, tmp_path, monkeypatch):
    kill_resume_and_compare(swept, ("online", 30), tmp_path, monkeypatch)


@pytest.mark.parametrize("spec, message", [
    ("offline.agent.batch_size=32,64", "is an integer"),
    ("offline.agent.hidden_dims=1,2", "is not a number"),
    ("offline.agent.gamma=0.9,0.99", "cannot be swept in one program"),
    ("offline.steps=100,200", "is not a learner hyperparameter"),
    ("online.agent.nope=1,2", "'nope' is not a hyperparameter of online learner 'sac'"),
    ("offline.agent.critic_lr", "is not 'PATH=V1,V2,...'"),
    ("offline.agent.critic_lr=1e-3,fast", "values must be numbers"),
    ("offline.agent.critic_lr=1e-3,1e-3", "lists a value twice"),
    ("online.agent.actor_lr=0.1,0.10000000001", "lists a value twice (0.1,0.10000000001: the same in float32"),
    ("offline.agent.cql_clip_diff_max=1,inf", "values must be finite numbers"),
    ("offline.agent.tau=0.1;offline.agent.tau=0.2", "is listed twice"),
    ("offline.agent.critic_lr=1e-3,-1", "setting 1 (critic_lr=-1): offline.agent"),
])
def test_a_bad_sweep_is_one_config_error_naming_it(pendulum_dataset_id, spec, message):
    with pytest.raises(ConfigError) as e:
        pipeline.validate_config(tiny_config(pendulum_dataset_id, vmap_sweep=spec))
    assert message in str(e.value) and "vmap_sweep" in str(e.value)


def test_a_wide_sweep_says_what_its_evaluations_cost(pendulum_dataset_id):
    narrow = vmap_sweep.parse(tiny_config(pendulum_dataset_id, vmap_sweep="online.agent.actor_lr=1e-4,3e-4"))
    assert vmap_sweep.wide_sweep_note(narrow, 5) is None
    values = ",".join(str(1e-4 * (i + 1)) for i in range(300))
    wide = vmap_sweep.parse(tiny_config(pendulum_dataset_id, vmap_sweep=f"online.agent.actor_lr={values}"))
    assert vmap_sweep.wide_sweep_note(wide, 5) == (
        "[smac_jax] vmap_sweep: 300 settings x 2 seeds = 600 lanes; every evaluation steps 3,000 environments "
        "(5 episodes per lane) on the host, which can take longer than the updates (fewer settings per run, or "
        "eval.episodes, shorten it; eval.env='jax' runs them on the device where the environment has a JAX-native "
        "port)")


def test_labels_name_distinct_settings_distinctly():
    from smac_jax.training.logger import format_value

    assert [format_value(v) for v in (1e-4, 3e-4, 1e-5, 2.5)] == ["0.0001", "0.0003", "1e-05", "2.5"]
    assert format_value(0.1000001) == "0.1000001" != format_value(0.1)  # {:g} would print 0.1 for both
    assert vmap_sweep.values_label({"online.agent.actor_lr": 0.0003000001}) == "actor_lr=0.0003000001"


def test_the_grid_and_its_lanes(pendulum_dataset_id):
    cfg = tiny_config(pendulum_dataset_id, vmap_sweep="offline.agent.critic_lr=1e-3,3e-4; online.agent.tau=0.01,0.02,0.05")
    sweep = vmap_sweep.parse(cfg)
    assert sweep.n_settings == 6 and sweep.n_seeds == 2
    assert [s["online.agent.tau"] for s in sweep.settings] == [0.01, 0.02, 0.05] * 2  # the first field slowest
    assert sweep.lane_setting == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert sweep.lane_seed_index == [0, 1] * 6
    np.testing.assert_allclose(sweep.lane_values()["offline.agent.critic_lr"], [1e-3] * 6 + [3e-4] * 6, rtol=1e-6)
    assert vmap_sweep.parse(tiny_config(pendulum_dataset_id)) is None


def test_a_field_the_programs_do_not_use_is_named(pendulum_dataset_id, tmp_path):
    # SAC -> SAC hands the temperature over: the online learner's initial temperature changes nothing
    cfg = tiny_config(pendulum_dataset_id, vmap_sweep="online.agent.init_temperature=0.1,1", **BUDGET)
    with pytest.raises(ConfigError, match="online.agent.init_temperature changes nothing"):
        quiet_run(cfg, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")  # found before the workdir is written


def test_a_sweep_that_names_no_setting_is_refused():
    for spec in (";", " ; ", ";;"):
        with pytest.raises(ConfigError, match="names no setting"):
            vmap_sweep.parse_spec(spec)
    assert vmap_sweep.parse_spec("") == () and vmap_sweep.parse_spec("  ") == ()


class _Branchy(SAC):
    """SAC whose update branches in Python on a float hyperparameter."""

    def update(self, state, batch, key):
        if self.config.tau > 0.01:
            return super().update(state, batch, key)
        return state, {}


def test_a_field_used_as_a_python_value_is_named():
    inner = _Branchy(resolve_config("sac", {"hidden_dims": (8, 8)}), 3, 1)
    learner = Swept(inner, {"offline.agent.tau": np.array([0.005, 0.05])}, {"offline.agent.tau": "tau"})
    key = jax.ShapeDtypeStruct((2,), np.uint32)
    state = jax.eval_shape(inner.init, key)
    batch = jax.eval_shape(lambda: replay.unpack(jnp.zeros((4, replay.row_width(3, 1))), 3, 1))
    programs = {"update": (lambda b, st, bt, k: b.update(st, bt, k), (state, batch, key))}
    with pytest.raises(ConfigError, match="offline.agent.tau cannot vary within one program.*update program"):
        check_sweepable(learner, programs, "offline")
    # the same field through SAC's own update is used as a number: no error
    check_sweepable(Swept(SAC(inner.config, 3, 1), learner.lane_values, learner.fields), programs, "offline")


def test_a_diverging_setting_is_named(pendulum_dataset_id, tmp_path):
    cfg = tiny_config(pendulum_dataset_id, vmap_sweep="offline.agent.critic_lr=3e-4,1e30",
                      **{"offline.steps": 50, "offline.ckpt_every": 50})
    with pytest.raises(DivergenceError, match=r"not finite at step 50 for setting 1 \(critic_lr=1e\+30\), seed index 0; "
                                              r"setting 1 \(critic_lr=1e\+30\), seed index 1 \(values"):
        quiet_run(cfg, str(tmp_path))


ONLINE_SPEC = "online.agent.actor_lr=3e-4,1e-4"


@pytest.fixture(scope="module")
def online_swept(pendulum_dataset_id, tmp_path_factory):
    return swept_run(pendulum_dataset_id, tmp_path_factory, ONLINE_SPEC, "online_swept")


def test_settings_of_online_values_share_one_offline_phase(online_swept, tmp_path):
    config, workdir, _ = online_swept
    # the offline phase ran once, one lane per seed: its checkpoint holds a plain learner's 2 lanes, not 4
    template = make_learner("sac", 3, 1, config.offline.agent).init_lanes(jax.random.split(jax.random.PRNGKey(0), 2))
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    try:
        ckpt.restore("offline", template)
    finally:
        ckpt.close()
    r0, r1 = (rows(os.path.join(workdir, "settings", str(k), "metrics.jsonl")) for k in (0, 1))
    assert [r for r in r0 if r["phase"] == "offline"] == [r for r in r1 if r["phase"] == "offline"]
    # and the last setting still computes what a plain run of its values computes
    quiet_run(vmap_sweep.parse(config).setting_config(config, 1), str(tmp_path))
    assert_rows_close(r1, rows(tmp_path / "metrics.jsonl"))
    assert_same_checkpoints(os.path.join(workdir, "settings", "1"), str(tmp_path))


def test_a_setting_of_online_values_has_a_continuation_control(online_swept, swept, tmp_path, minari_store):
    """continue_offline.py continues the shared offline phase of settings/1 (hand-over at 100, 40
    updates: the window of 60 steps less 20 before learning starts); transfer_check reads the
    setting and the control, both starting from the same offline actor."""
    _, workdir, _ = online_swept
    setting, cont, out = os.path.join(workdir, "settings", "1"), str(tmp_path / "cont"), tmp_path / "out"
    proc = run_script("continue_offline.py", [f"--run={setting}", "--updates=40", "--ckpt_every=20",
                                              f"--workdir={cont}", "--progress=false"], minari_store)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ls.checkpoint_steps(cont, "offline")[-3:] == [100, 120, 140]
    # the swept run stands for its settings, each labelled with its values
    proc = run_script("transfer_check.py", [f"--workdirs={workdir}", f"--continuation={cont}", f"--out={out}",
                                            "--episodes=3", "--window_steps=60"], minari_store)
    assert proc.returncode == 0, proc.stderr[-2000:]
    checked = json.load(open(out / "transfer_check.json"))
    assert [r["label"] for r in checked] == ["sac -> sac [actor_lr=0.0003]", "sac -> sac [actor_lr=0.0001]"]
    assert checked[1]["workdir"] == setting
    c = json.load(open(out / "continuation_control.json"))
    assert checked[1]["checkpoint_steps"] == [0, 30, 60] and c["checkpoint_steps"] == [100, 120, 140]
    # one offline phase: both settings and the control start from the same actor
    for r in checked:
        assert c["mean_scores"][0] == pytest.approx(r["mean_scores"][0], rel=1e-5)
    # a setting of a sweep over offline values has no plain offline state to continue: one line
    swept_setting = os.path.join(swept[1], "settings", "0")
    proc = run_script("continue_offline.py", [f"--run={swept_setting}", "--updates=40", f"--workdir={cont}2"],
                      minari_store)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"error: {swept_setting} is a setting of a vmap_sweep over offline values: its offline state is lanes of "
        "the sweep's program, which a plain run cannot continue; run that setting on its own"]


def test_a_shared_offline_phase_killed_resumes_to_the_same_numbers(online_swept, tmp_path, monkeypatch):
    kill_resume_and_compare(online_swept, ("offline", 50), tmp_path, monkeypatch)


def test_the_report_reads_every_setting_as_a_fine_tune(swept, online_swept, tmp_path):
    root = tmp_path / "root"
    (root / "pendulum").mkdir(parents=True)
    os.symlink(swept[1], root / "pendulum" / "offline-and-online")
    os.symlink(online_swept[1], root / "pendulum" / "online")
    page = write_report(str(root), reps=100, date="2026-01-01")
    with open(os.path.splitext(page)[0] + "_regret.csv") as f:
        cells = {(r["offline"], r["online"]) for r in csv.DictReader(f)}
    assert cells == {("sac [critic_lr=0.0003]", "sac [actor_lr=0.0001]"), ("sac [critic_lr=0.001]", "sac [actor_lr=0.0001]"),
                     ("sac", "sac [actor_lr=0.0003]"), ("sac", "sac [actor_lr=0.0001]")}
    text = open(page).read()
    assert "from the 4 finished fine-tunes" in text
    # the checkpoint analyses' command lines (transfer_check.py, landscape.py) expand a swept run alike
    setting = os.path.join(swept[1], "settings", "1")
    assert ls.expand_runs([online_swept[1], setting, str(tmp_path)]) == [
        (os.path.join(online_swept[1], "settings", "0"), "sac -> sac [actor_lr=0.0003]"),
        (os.path.join(online_swept[1], "settings", "1"), "sac -> sac [actor_lr=0.0001]"),
        (setting, "sac [critic_lr=0.001] -> sac [actor_lr=0.0001]"), (str(tmp_path), None)]
    # experiments/compare.py's page names the settings alike
    labelled = load_labelled(swept[1])
    assert list(labelled) == ["sac [critic_lr=0.0003] -> sac [actor_lr=0.0001]",
                              "sac [critic_lr=0.001] -> sac [actor_lr=0.0001]"]
    assert [r["summary"]["online_final"] for r in labelled.values()] == \
        [s["online_final"] for s in swept[2]["settings"]]
    # each setting's drops, as its own summary has them
    for (_, workdir, summary), k, pair in ((swept, 1, "sac [critic_lr=0.001] -> sac [actor_lr=0.0001]"),
                                           (online_swept, 0, "sac -> sac [actor_lr=0.0003]")):
        (row,) = [line for line in text.splitlines() if line.startswith(f"| pendulum: {pair} | ")]
        setting = summary["settings"][k]  # a drop the run flagged as unmeasured is marked
        mark = " †" if "transfer_drop_warning" in setting else ""
        assert row.split(" | ")[3] == ", ".join(f"{d:.1f}" for d in setting["transfer_drop"]) + mark


def test_a_learner_with_a_host_update_is_swept(pendulum_dataset_id, tmp_path):
    """SAMG's adaptive C-VAE update runs between chunks, per lane with the lane's values and its
    seed's key: IQL -> SAMG-IQL with adaptive_frac (read by the adaptive update alone) at two
    values; the last setting against a plain run of its value, sharing the fitted C-VAE."""
    cvae = {"hidden_dims": (16, 16), "steps": 200, "chunk": 100, "batch_size": 64}
    agent = {"online.agent.cvae": cvae, "online.agent.cvae_path": str(tmp_path / "cvae"),
             "online.agent.adaptive_every": 30, "online.agent.adaptive_steps": 5, "online.agent.refit_rows": 200}
    config = tiny_config(pendulum_dataset_id, "iql", "samg_iql", vmap_sweep="online.agent.adaptive_frac=0.1,1.0",
                         **BUDGET, **agent)
    summary = quiet_run(config, str(tmp_path / "swept"))
    assert len(summary["settings"]) == 2
    plain_cfg = vmap_sweep.parse(config).setting_config(config, 1)
    quiet_run(plain_cfg, str(tmp_path / "plain"))
    r0, r1 = (rows(tmp_path / "swept" / "settings" / str(k) / "metrics.jsonl") for k in (0, 1))
    assert_rows_close(r1, rows(tmp_path / "plain" / "metrics.jsonl"))
    # the adaptive update at step 30 trained the C-VAE on different rows: the coefficients differ after it
    p0, p1 = ([r["samg_p_mean"] for r in rs if r["phase"] == "online" and r["step"] == 60] for rs in (r0, r1))
    assert not np.allclose(p0, p1)


def test_a_sweep_fine_tunes_with_online_values_from_its_pretrain(online_swept, pendulum_dataset_id, tmp_path):
    """experiments/sweep.py's grid with a vmap_sweep of online values: the plain pretrain, then one
    swept fine-tune seeded from it, whose every setting's files equal the swept run's (which ran
    its own offline phase) byte for byte; offline values are refused before anything runs."""
    _, workdir, _ = online_swept

    def config_fn(spec):
        return lambda task, off, on: tiny_config(pendulum_dataset_id, off, on, vmap_sweep=spec, **BUDGET)

    with contextlib.redirect_stdout(io.StringIO()):
        records = run_sweep(["pendulum"], ["sac"], ["sac"], str(tmp_path), config_fn(ONLINE_SPEC), progress=False)
    assert [(r["online"], r["status"]) for r in records] == [(None, "ran"), ("sac", "ran")]
    tune = tmp_path / "pendulum" / "sac-sac"
    for name in ("summary.json", *(f"settings/{k}/{f}" for k in (0, 1) for f in ("metrics.jsonl", "summary.json"))):
        with open(tune / name, "rb") as f, open(os.path.join(workdir, name), "rb") as g:
            assert f.read() == g.read(), name
    with pytest.raises(ConfigError, match="vmap_sweep in a sweep varies either offline values .* not both"):
        run_sweep(["pendulum"], ["sac"], ["sac"], str(tmp_path / "other"), config_fn(SPEC), progress=False)
    assert not os.path.exists(tmp_path / "other")


def test_a_sweep_of_offline_values_runs_them_in_its_pretrain(swept, pendulum_dataset_id, tmp_path):
    """Offline values in experiments/sweep.py's grid: the pretrain is a swept run, the fine-tune
    continues its lanes; each setting's rows are those of the swept fixture's setting (the same
    values: the fixture's online actor_lr, swept there at one value, is set plainly here)."""
    def config_fn(task, off, on):
        return tiny_config(pendulum_dataset_id, off, on, vmap_sweep="offline.agent.critic_lr=3e-4,1e-3",
                           **BUDGET, **{"online.agent.actor_lr": 1e-4})

    with contextlib.redirect_stdout(io.StringIO()):
        records = run_sweep(["pendulum"], ["sac"], ["sac"], str(tmp_path), config_fn, progress=False)
    assert [(r["online"], r["status"]) for r in records] == [(None, "ran"), ("sac", "ran")]
    assert records[0]["summary"]["vmap_sweep"] == "offline.agent.critic_lr=3e-4,1e-3"  # the pretrain is swept
    for k in (0, 1):
        assert_rows_close(rows(tmp_path / "pendulum" / "sac-sac" / "settings" / str(k) / "metrics.jsonl"),
                          rows(os.path.join(swept[1], "settings", str(k), "metrics.jsonl")))
    # the report counts the fine-tune's settings, not the swept pretrain's
    page = write_report(str(tmp_path), reps=50)
    assert "from the 2 finished fine-tunes" in open(page).read()
    with open(os.path.splitext(page)[0] + "_regret.csv") as f:
        assert [(r["offline"], r["online"]) for r in csv.DictReader(f)] == [
            ("sac [critic_lr=0.0003]", "sac"), ("sac [critic_lr=0.001]", "sac")]


def test_swept_grid_from_python():
    sac = make_learner("sac", 3, 1, {"hidden_dims": (8, 8)})
    swept = Swept.grid(sac, {"critic_lr": [1e-4, 1e-3], "tau": [0.005, 0.01, 0.02]}, n_seeds=2)
    assert swept.n_lanes == 12 and swept.lane_seed_index == [0, 1] * 6
    np.testing.assert_allclose(swept.lane_values["critic_lr"], [1e-4] * 6 + [1e-3] * 6)
    np.testing.assert_allclose(swept.lane_values["tau"][:6], [0.005, 0.005, 0.01, 0.01, 0.02, 0.02])
    with pytest.raises(ConfigError, match="critic_lr"):
        Swept.grid(sac, {"critic_lr": [1e-3, -1.0]}, n_seeds=2)


def test_the_printed_table_does_not_report_an_unmeasured_drop():
    settings = [{"setting": 0, "values": {"online.agent.tau": 0.005}, "offline_final_mean": 10.0,
                 "online_final_mean": 20.0, "transfer_drop_mean": 0.0, "transfer_drop_warning": "no online evaluation"},
                {"setting": 1, "values": {"online.agent.tau": 0.01}, "offline_final_mean": 10.0,
                 "online_final_mean": 25.0, "transfer_drop_mean": 3.5}]
    assert vmap_sweep.format_table({"settings": settings}).splitlines() == [
        "  setting 0 (online.agent.tau=0.005): offline 10.0, online 20.0, drop not measured (warning below)",
        "  setting 1 (online.agent.tau=0.01): offline 10.0, online 25.0, drop 3.5"]
