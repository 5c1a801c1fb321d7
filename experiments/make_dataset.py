"""Generate D4RL-style Minari datasets for any Gymnasium env with Box actions.

    python experiments/make_dataset.py --env=Hopper-v5 --kinds=random,medium,medium-replay,expert
"""
from absl import app, flags, logging

from smac_jax.data.factory import KINDS, generate_datasets

_ENV = flags.DEFINE_string("env", "Pendulum-v1", "Gymnasium environment id.")
_KINDS = flags.DEFINE_list("kinds", list(KINDS), "Dataset kinds to write.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the SAC run and the rollouts.")
_TRAIN = flags.DEFINE_integer("train_steps", 100_000, "Environment steps of the SAC training run.")
_EVAL = flags.DEFINE_integer("eval_every", 5_000, "Snapshot/evaluation interval of the training run.")
_N = flags.DEFINE_integer("n_transitions", None, "Transitions per rolled-out dataset (default: train_steps).")
_FRAC = flags.DEFINE_float("medium_fraction", 1 / 3, "Medium = this fraction of the way from random to expert.")
_NS = flags.DEFINE_string("namespace", "smac_jax", "Minari namespace of the dataset ids.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace existing datasets.")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    ids = generate_datasets(_ENV.value, _KINDS.value, seed=_SEED.value, train_steps=_TRAIN.value,
                            eval_every=_EVAL.value, n_transitions=_N.value, medium_fraction=_FRAC.value,
                            namespace=_NS.value, overwrite=_OVERWRITE.value)
    for kind, i in ids.items():
        print(f"{kind:>14}: {i}")


if __name__ == "__main__":
    app.run(main)
