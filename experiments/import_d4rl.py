"""Import D4RL's own HDF5 dataset files as local Minari datasets (smac_jax.data.d4rl).

    python experiments/import_d4rl.py --file=~/.d4rl/datasets/hopper_medium_replay-v2.hdf5
    python experiments/import_d4rl.py --file='~/.d4rl/datasets/*.hdf5'      # every file there it can map
    python experiments/o2o.py --config=configs/o2o.py:hopper --config.dataset.id=d4rl/hopper/medium-replay-v2 \\
        --config.dataset.generate=False --workdir=runs/hopper-mr-d4rl

The environment (the maintained Gymnasium equivalent of D4RL's) and D4RL's reference scores come
from the file name (``<env>_<dataset>-v<N>.hdf5``); ``--env`` and ``--dataset_id`` set them for
other names.
"""
import os

from absl import flags, logging

from smac_jax.cli import fail, run_cli
from smac_jax.data.d4rl import D4RL_ENVS, d4rl_files, import_d4rl_file
from smac_jax.errors import DatasetError

_FILE = flags.DEFINE_list("file", None, "D4RL HDF5 files (observations, actions, rewards, terminals, timeouts): "
                          "paths or glob patterns, comma-separated.", required=True)
_ID = flags.DEFINE_string("dataset_id", None, "Minari id to write, for a single file (default d4rl/<env>/<dataset>-v<N> "
                          "from the file name).")
_ENV = flags.DEFINE_string("env", None, "Gymnasium environment id (default from the file name: "
                           + ", ".join(f"{k} -> {v[0]}" for k, v in D4RL_ENVS.items()) + ").")
_REF = flags.DEFINE_list("ref_scores", None, "MIN,MAX reference returns for normalised scores (default: D4RL's "
                         "for the environment).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a local dataset of the same id.")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    ref = None
    if _REF.value is not None:
        try:
            ref = tuple(float(v) for v in _REF.value)
        except ValueError:
            ref = ()
        if len(ref) != 2 or not ref[0] < ref[1]:
            fail(f"--ref_scores must be MIN,MAX with MIN < MAX, got {','.join(_REF.value)}")
    files = d4rl_files(_FILE.value)
    if len(files) > 1 and _ID.value is not None:
        fail(f"--dataset_id names one dataset, but --file matches {len(files)} files")
    failed = []
    for path in files:  # one at a time; a file that cannot be imported is reported and the rest go on
        try:
            dataset_id = import_d4rl_file(path, _ID.value, _ENV.value, ref, _OVERWRITE.value)
        except DatasetError as e:
            if len(files) == 1:
                raise
            print(f"skipped {path}: {e}", flush=True)
            failed.append(os.path.basename(path))
            continue
        print(f"wrote {dataset_id}; use it with --config.dataset.id={dataset_id} --config.dataset.generate=False",
              flush=True)
    if failed:
        fail(f"{len(failed)} of {len(files)} files not imported ({', '.join(failed)}); the reasons are above")


if __name__ == "__main__":
    run_cli(main)
