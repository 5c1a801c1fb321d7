"""A sweep: tasks x offline learners x online learners, each offline phase run once and
fine-tuned by every online learner; seeds vmapped inside each run (docs/sweeps.md).

    python experiments/sweep.py --tasks=pendulum,hopper --offline=smac,cql --online=sac,calql \
        --root=runs/sweep
    # split over machines (each (task, offline) group runs on one shard only):
    python experiments/sweep.py ... --shard=0/2     # and --shard=1/2 on the other machine
    # overrides for every run:
    python experiments/sweep.py ... --set=offline.steps=20000 --set=online.steps=20000
    # each fine-tune one program over settings of the online learner x the seeds:
    python experiments/sweep.py ... --set=vmap_sweep="online.agent.actor_lr=1e-4,3e-4"
    # or of the offline learner (the pretrain runs them; every fine-tune continues its lanes):
    python experiments/sweep.py ... --set=vmap_sweep="offline.agent.cql_alpha=1,5,10"
    # other online settings from the same offline phases, in a root of their own:
    python experiments/sweep.py ... --root=runs/sweep-mix --pretrain_from=runs/sweep \
        --set=online.replay.init=mix

Run the same command again to resume: finished runs are skipped, interrupted ones continued.
Then: python experiments/report.py --root=runs/sweep
"""
from __future__ import annotations

import os
import sys

from absl import flags, logging

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "configs"))
import o2o as o2o_configs  # noqa: E402

from smac_jax.cli import check_set_once, run_cli  # noqa: E402
from smac_jax.errors import ConfigError  # noqa: E402
from smac_jax.runtime import tune_host_allocator  # noqa: E402
from smac_jax.training.sweep import parse_shard, run_sweep  # noqa: E402

_TASKS = flags.DEFINE_list("tasks", ["pendulum"], "Tasks in configs/o2o.py.")
_OFF = flags.DEFINE_list("offline", ["smac", "sac", "cql"], "Offline learners.")
_ON = flags.DEFINE_list("online", ["sac"], "Online learners.")
_ROOT = flags.DEFINE_string("root", None, "Directory of the sweep's runs.", required=True)
_SEEDS = flags.DEFINE_integer("n_seeds", 3, "Seeds per run (vmapped inside the run).")
_SET = flags.DEFINE_multi_string("set", [], "Overrides KEY=VALUE applied to every run's config.")
_SHARD = flags.DEFINE_string("shard", "0/1", "i/n: run the i-th of n parts of the grid.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show progress bars.")
_PRETRAIN_FROM = flags.DEFINE_string("pretrain_from", None, "Another sweep's root: start from a copy of its finished "
                                     "pretrains (same offline settings) instead of running them again, e.g. to "
                                     "fine-tune with other online settings in a root of their own.")


def config_fn(task: str, offline: str, online: str):
    return o2o_configs.get_config(f"{task},{offline},{online}")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    tune_host_allocator()
    for flag, names in (("tasks", _TASKS.value), ("offline", _OFF.value), ("online", _ON.value)):
        if not names:
            raise ConfigError(f"--{flag} is empty: name at least one")
    unknown = [t for t in _TASKS.value if t not in o2o_configs.TASKS]
    if unknown:
        raise ConfigError(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(o2o_configs.TASKS)}")
    check_set_once(_SET.value, own_flags={"n_seeds": "n_seeds", "task": "tasks", "offline.learner": "offline",
                                          "online.learner": "online"})
    records = run_sweep(_TASKS.value, _OFF.value, _ON.value, _ROOT.value, config_fn, n_seeds=_SEEDS.value,
                        overrides=_SET.value, shard=parse_shard(_SHARD.value), progress=_PROGRESS.value,
                        pretrain_from=_PRETRAIN_FROM.value)
    tunes = sum(r["online"] is not None for r in records)
    print(f"[sweep] {tunes} fine-tunes and {len(records) - tunes} pretrains done in {_ROOT.value}; "
          f"report: python experiments/report.py --root={_ROOT.value}")


if __name__ == "__main__":
    run_cli(main)
