"""Continue a run's offline phase past its end into a new workdir: the control of a transfer drop.

Copies the offline checkpoints, shared models (score model, C-VAE) and offline metrics rows of
--run (a sweep's pretrain, any run whose offline phase finished, or a setting ``<run>/settings/<k>``
of a ``vmap_sweep`` over online values only, whose settings share one offline phase) into --workdir, then resumes
the offline phase for --updates more updates with a checkpoint every --ckpt_every, and no
online phase. The source run is not touched. Training goes on from the source's last offline
state with its losses, optimiser states and data (the minibatches are drawn per chunk of
updates, and checkpoints end chunks, so the draws differ from those a longer source run would
have made): its checkpoints are what the policy would have become had training stayed offline.

    python experiments/continue_offline.py --run=runs/sweep/hopper/smac/pretrain --updates=3000 \
        --workdir=runs/hopper-smac-continued
    python experiments/transfer_check.py --workdirs=runs/sweep/hopper/smac-sac --window_steps=4000 \
        --continuation=runs/hopper-smac-continued --out=runs/check

An interrupted continuation resumes with the same command plus --resume. Bad input: one line
``error: ...``.
"""
from __future__ import annotations

import json
import math
import os
import sys

import ml_collections
from absl import flags, logging

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs"))
import o2o as o2o_configs  # noqa: E402

from smac_jax.analysis import landscape as ls  # noqa: E402
from smac_jax.cli import fail, run_cli  # noqa: E402
from smac_jax.errors import ConfigError  # noqa: E402
from smac_jax.runtime import tune_host_allocator  # noqa: E402
from smac_jax.training import pipeline  # noqa: E402
from smac_jax.training.sweep import seed_finetune  # noqa: E402

_RUN = flags.DEFINE_string("run", None, "Workdir whose offline phase is continued (left untouched).")
_UPDATES = flags.DEFINE_integer("updates", None, "Offline updates to add after the source's last one.")
_CKPT_EVERY = flags.DEFINE_integer("ckpt_every", 500, "Save an offline checkpoint every this many updates.")
_WORKDIR = flags.DEFINE_string("workdir", None, "New workdir for the continued run.")
_RESUME = flags.DEFINE_bool("resume", False, "Continue an interrupted continuation in --workdir.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")


def _overlay(node: ml_collections.ConfigDict, stored: dict, path: str = "") -> None:
    """Set every field of ``node`` that ``stored`` has to the stored value (fields added to the
    library since the run was made keep their defaults); a stored field ``node`` lacks is an error."""
    for k, v in stored.items():
        if k not in node:
            raise ConfigError(f"the run's config has a field this version does not know: {path}{k}")
        if isinstance(v, dict) and isinstance(node[k], ml_collections.ConfigDict):
            _overlay(node[k], v, f"{path}{k}.")
        else:
            node[k] = tuple(v) if isinstance(v, list) and isinstance(node[k], tuple) else v


def continuation_config(source: dict, handover: int, updates: int, ckpt_every: int) -> ml_collections.ConfigDict:
    """The source's config (over today's defaults for its task and learners) with the offline phase
    ``updates`` longer, checkpoints every ``ckpt_every`` updates (scan chunks shortened to fit) and
    no online phase."""
    c = o2o_configs.get_config(f"{source['task']},{source['offline']['learner']},{source['online']['learner']}")
    _overlay(c, source)
    off = c.offline
    off.steps = handover + updates
    off.ckpt_every = ckpt_every
    off.scan_steps = math.gcd(off.scan_steps, handover, ckpt_every, off.eval_every, off.steps)
    c.online.steps = 0
    c.ckpt_keep = max(c.ckpt_keep, updates // ckpt_every + 2)
    return c


def main(argv):
    del argv
    logging.set_verbosity(logging.ERROR)  # orbax warns about every checkpoint's optional metadata file
    tune_host_allocator()
    if not _RUN.value or not _WORKDIR.value or _UPDATES.value is None:
        fail("give --run, --updates and --workdir")
    if _UPDATES.value < 1 or _CKPT_EVERY.value < 1:
        fail(f"--updates and --ckpt_every must be >= 1, got {_UPDATES.value} and {_CKPT_EVERY.value}")
    try:
        source = ls.read_run_config(_RUN.value)
    except ls.LandscapeInputError as e:
        fail(str(e))
    where = ls.checkpoints_of(_RUN.value)
    if where.offline_swept:
        fail(f"{_RUN.value} is a setting of a vmap_sweep over offline values: its offline state is lanes of the "
             "sweep's program, which a plain run cannot continue; run that setting on its own")
    saved = ls.checkpoint_steps(_RUN.value, "offline")
    handover = source["offline"]["steps"]
    if handover not in saved:
        fail(f"{_RUN.value}: no offline checkpoint at its last update {handover} (saved: {saved}); "
             "finish its offline phase first")
    try:
        config = continuation_config(source, handover, _UPDATES.value, _CKPT_EVERY.value)
    except (ConfigError, KeyError, TypeError, ValueError) as e:
        fail(f"{_RUN.value}: cannot rebuild its config: {e}")
    if not _RESUME.value:
        if os.path.exists(_WORKDIR.value):
            fail(f"{_WORKDIR.value} already exists; pass --resume to continue it, or choose another --workdir")
        os.makedirs(os.path.dirname(os.path.abspath(_WORKDIR.value)), exist_ok=True)
        # a setting of a sweep of online values: the sweep's shared offline phase is a plain run's
        seed_finetune(_RUN.value, _WORKDIR.value, config, files_from=where.root)
    summary = pipeline.run(config, _WORKDIR.value, resume=True, progress=_PROGRESS.value)
    print(f"[continue_offline] offline phase continued from update {handover} to {config.offline.steps} "
          f"in {_WORKDIR.value} (checkpoints every {_CKPT_EVERY.value})")
    print(json.dumps({k: summary[k] for k in ("offline_final", "offline_final_mean") if k in summary}))


if __name__ == "__main__":
    run_cli(main)
