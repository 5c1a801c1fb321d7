"""Generate D4RL-style Minari datasets for any Gymnasium env with Box actions.

    python experiments/make_dataset.py --env=Hopper-v5 --kinds=random,medium,medium-replay,expert
"""
from absl import flags, logging

from smac_jax.cli import fail, run_cli
from smac_jax.data.dataset import load_dataset
from smac_jax.training.dataset_factory import KINDS, generate_datasets
from smac_jax.runtime import tune_host_allocator

_ENV = flags.DEFINE_string("env", "Pendulum-v1", "Gymnasium environment id.")
_KINDS = flags.DEFINE_list("kinds", list(KINDS), "Dataset kinds to write.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the SAC run and the rollouts.")
_TRAIN = flags.DEFINE_integer("train_steps", 100_000, "Environment steps of the SAC training run.")
_EVAL = flags.DEFINE_integer("eval_every", 5_000, "Evaluation interval of the training run.")
_SNAP = flags.DEFINE_integer("snapshot_every", 1_000, "Actor snapshot interval of the training run: the medium "
                             "policy is the first snapshot at the medium return, found to within this many steps.")
_STARTS = flags.DEFINE_integer("learning_starts", 1_000, "Environment steps of uniform-random actions before SAC's "
                               "first update (must be below --train_steps).")
_N = flags.DEFINE_integer("n_transitions", None, "Transitions per rolled-out dataset (default: train_steps).")
_FRAC = flags.DEFINE_float("medium_fraction", 1 / 3, "Medium = this fraction of the way from random to expert.")
_NS = flags.DEFINE_string("namespace", "smac_jax", "Minari namespace of the dataset ids.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace existing datasets.")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    tune_host_allocator()
    if not _KINDS.value:
        fail(f"--kinds is empty; choose from {list(KINDS)}")
    if _SEED.value < 0:
        fail(f"--seed must be >= 0, got {_SEED.value}")
    bad = [k for k in _KINDS.value if k not in KINDS]
    if bad:
        fail(f"--kinds: unknown dataset kind(s) {bad}; choose from {list(KINDS)}")
    for name, v in (("train_steps", _TRAIN.value), ("eval_every", _EVAL.value), ("snapshot_every", _SNAP.value)):
        if v < 1:
            fail(f"--{name} must be >= 1, got {v}")
    if _N.value is not None and _N.value < 1:
        fail(f"--n_transitions must be >= 1, got {_N.value}")
    if not 0.0 < _FRAC.value < 1.0:
        fail(f"--medium_fraction must be in (0, 1), got {_FRAC.value}")
    ids = generate_datasets(_ENV.value, _KINDS.value, seed=_SEED.value, train_steps=_TRAIN.value,
                            eval_every=_EVAL.value, snapshot_every=_SNAP.value, learning_starts=_STARTS.value,
                            n_transitions=_N.value, medium_fraction=_FRAC.value,
                            namespace=_NS.value, overwrite=_OVERWRITE.value)
    for kind, i in ids.items():
        print(f"{kind:>14}: {i} ({load_dataset(i).describe()})")


if __name__ == "__main__":
    run_cli(main)
