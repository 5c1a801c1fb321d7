"""Offline pre-training -> hand-over -> online fine-tuning, several seeds vmapped, in one command.

    python experiments/o2o.py --config=configs/o2o.py:pendulum --workdir=runs/pendulum
    python experiments/o2o.py --config=configs/o2o.py:pendulum --config.online.steps=20000 --workdir=runs/x
    # after an interruption: the same command with --resume (the config must be the run's own)
    python experiments/o2o.py --config=configs/o2o.py:pendulum --config.online.steps=20000 \
        --workdir=runs/x --resume
"""
from __future__ import annotations

import json
import os

from absl import flags, logging
from ml_collections import config_flags

from smac_jax.cli import run_cli
from smac_jax.runtime import tune_host_allocator
from smac_jax.training.dataset_factory import ensure_dataset
from smac_jax.training.pipeline import check_start, run

# the default found from any working directory; a --config path is relative to the working directory
_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "configs", "o2o.py")
_CONFIG = config_flags.DEFINE_config_file("config", f"{os.path.normpath(_DEFAULT_CONFIG)}:pendulum-medium",
                                          "Job config.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (config, metrics, plot, checkpoints).", required=True)
_RESUME = flags.DEFINE_bool("resume", False, "Continue from the last checkpoint in --workdir.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace the run already in --workdir.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    tune_host_allocator()
    check_start(_CONFIG.value, _WORKDIR.value, _RESUME.value, _OVERWRITE.value)  # before a dataset is generated
    ensure_dataset(_CONFIG.value.dataset)
    summary = run(_CONFIG.value, _WORKDIR.value, resume=_RESUME.value, progress=_PROGRESS.value,
                  overwrite=_OVERWRITE.value)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    run_cli(main)
