"""The Markdown report of a sweep (experiments/sweep.py): budgets, the regret table (offline
learners x online learners, IQM with 95% stratified-bootstrap intervals), transfer drops and return
curves per task, each figure with its data as CSV beside the page (docs/sweeps.md).

    python experiments/report.py --root=runs/sweep                 # -> runs/sweep/report.md
    python experiments/report.py --root=runs/sweep --out=docs/results_sweep.md
"""
from __future__ import annotations

import shlex
import sys

from absl import flags, logging

from smac_jax.analysis.report import write_report
from smac_jax.cli import run_cli

_ROOT = flags.DEFINE_string("root", None, "The sweep's --root.", required=True)
_OUT = flags.DEFINE_string("out", None, "Markdown page to write (default <root>/report.md; a path not ending "
                           "in .md is a directory that gets report.md); figures beside it.")
_REPS = flags.DEFINE_integer("reps", 50_000, "Bootstrap replicates of the confidence intervals (>= 1).", lower_bound=1)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing page at --out (and its figures and data).")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # rliable logs every estimate at INFO
    command = shlex.join(["python", "experiments/report.py", *sys.argv[1:]])
    page = write_report(_ROOT.value, _OUT.value, reps=_REPS.value, overwrite=_OVERWRITE.value, command=command)
    print(f"[report] wrote {page}")


if __name__ == "__main__":
    run_cli(main)
