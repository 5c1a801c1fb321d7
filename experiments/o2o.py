"""Offline pre-training -> hand-over -> online fine-tuning, several seeds vmapped, in one command.

    python experiments/o2o.py --config=configs/o2o.py:pendulum --workdir=runs/pendulum
    python experiments/o2o.py --config=configs/o2o.py:pendulum --config.online.steps=20000 \
        --workdir=runs/x --resume
"""
from __future__ import annotations

import json
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from smac_jax.data.dataset import DatasetError
from smac_jax.learners import ConfigError, TransferError
from smac_jax.training.checkpoint import CheckpointMismatchError
from smac_jax.training.pipeline import DivergenceError, run

_CONFIG = config_flags.DEFINE_config_file("config", "configs/o2o.py:pendulum", "Job config.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (config, metrics, plot, checkpoints).", required=True)
_RESUME = flags.DEFINE_bool("resume", False, "Continue from the last checkpoint in --workdir.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    try:
        summary = run(_CONFIG.value, _WORKDIR.value, resume=_RESUME.value, progress=_PROGRESS.value)
    except (ConfigError, DatasetError, TransferError, DivergenceError, CheckpointMismatchError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    app.run(main)
