"""One error boundary for every launch script.

``run_cli(main)`` is ``absl.app.run(main)`` where a bad flag (unknown flag, missing required flag,
unknown or mistyped ``--config.*`` key) and any of the library's own errors
(:class:`smac_jax.errors.SmacJaxError`) print one line, ``error: ...``, on stderr and exit with
status 2. Anything else is a bug and keeps its traceback. It also turns on the on-disk cache of
compiled programs (:func:`smac_jax.runtime.enable_compilation_cache`).
"""
from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence

from absl import app, flags

from smac_jax.errors import ConfigError, SmacJaxError
from smac_jax.runtime import enable_compilation_cache


def fail(message: str) -> None:
    """Print ``error: message`` (one line) and exit with status 2."""
    print("error: " + " ".join(str(message).split()), file=sys.stderr)
    sys.exit(2)


def apply_override(config, assignment: str) -> None:
    """Apply one ``--set KEY=VALUE`` to a ConfigDict: ``KEY`` dotted (``offline.agent.critic_lr``);
    ``VALUE`` taken as given for a string field, else evaluated as Python and cast to the field's
    type (``1e-4``, ``(256, 256)``; a boolean field takes ``true``/``false`` in any case, ``yes``/``no``
    or ``1``/``0``; an unset placeholder takes the value as evaluated)."""
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE")
    *path, last = key.split(".")
    node = config
    try:
        for p in path:
            node = node[p]
        old = node[last]
    except (KeyError, AttributeError, TypeError):
        raise ConfigError(f"--set {assignment!r}: the config has no field {key!r}") from None
    if isinstance(old, str):
        node[last] = value
        return
    if isinstance(old, bool):  # true/false as on every other command line, and Python's True/False
        words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
        if value.strip().lower() not in words:
            raise ConfigError(f"--set {assignment!r}: {key} is a boolean; give true or false")
        node[last] = words[value.strip().lower()]
        return
    try:
        names = {"nan": math.nan, "inf": math.inf, "float": float, "int": int, "tuple": tuple, "list": list}
        new = eval(value, {"__builtins__": {}}, names)  # noqa: S307  (a trusted command line)
    except Exception as e:  # noqa: BLE001  (a bad literal)
        raise ConfigError(f"--set {assignment!r}: not a Python value ({type(e).__name__}: {e})") from None
    # an integer field takes integers only (50.9 was truncated to 50, True stored as 1), as --config.FIELD does
    if isinstance(old, int) and (isinstance(new, bool) or not (isinstance(new, int) or
                                                               (isinstance(new, float) and new.is_integer()))):
        raise ConfigError(f"--set {assignment!r}: {key} is an integer; got {value}")
    try:
        node[last] = new if old is None else type(old)(new)
    except Exception as e:  # noqa: BLE001  (a value of the wrong type)
        raise ConfigError(f"--set {assignment!r}: {type(e).__name__}: {e}") from None


def earlier_outputs(out: str, names: Sequence[str], overwrite: bool) -> list[str]:
    """Which of a tool's output files ``names`` ``out`` already holds; an error naming them unless
    ``overwrite`` (then the caller deletes them with :func:`remove_outputs` just before it writes,
    so that no file of an earlier invocation stays beside the new ones). ``out`` naming a file, not
    a directory, is an error too."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise SmacJaxError(f"--out {out} is a file; --out names the directory the results are written to")
    present = [n for n in names if os.path.exists(os.path.join(out, n))]
    if present and not overwrite:
        raise SmacJaxError(f"{out} already holds {', '.join(present)} from an earlier run; pass --overwrite to "
                           "replace them, or give another --out")
    return present


def remove_outputs(out: str, names: Sequence[str]) -> None:
    for n in names:
        if os.path.exists(os.path.join(out, n)):
            os.remove(os.path.join(out, n))


def _config_key_message(err: Exception, argv: list[str]) -> str:
    """Name the ``--config.*`` override that ml_collections could not apply."""
    detail = str(err)
    m = re.search(r"[A-Za-z_]\w*", detail)
    key = m.group(0) if m else detail
    m = re.search(r'Did you mean "(\w+)"', detail)
    hint = f" (did you mean {m.group(1)!r}?)" if m else ""
    for arg in argv:
        name = arg.lstrip("-").split("=", 1)[0]
        if name.startswith("config.") and name.split(".")[-1] == key:
            return f"unknown config key {name[len('config.'):]!r}{hint}"
    return f"bad --config override: {detail}{hint}"


def _flag_message(message: str) -> str:
    """A flag error's message; for a config file that failed to load (absl puts the traceback in
    the message), the flag and the exception's own line only."""
    head, sep, tb = message.partition("Traceback (most recent call last):")
    if not sep or not tb.strip():
        return message
    last = tb.strip().splitlines()[-1].strip()  # "package.module.SomeError: what went wrong"
    m = re.match(r"[\w.]*(Error|Exception): (.*)", last)
    return f"{head.split(': Error whilst', 1)[0].rstrip(': ')}: {m.group(2) if m else last}"


def check_set_once(overrides: Sequence[str], flag: str = "--set", own_flags: Mapping[str, str] | Sequence[str] = ()) -> None:
    """``--set KEY=VALUE`` overrides name each KEY once (else the last would win without a word),
    and none of the fields the script sets from a flag of its own (``own_flags``: field -> flag,
    e.g. ``{"n_seeds": "n_seeds", "offline.learner": "offline"}``; a sequence: the same names)."""
    keys = [o.split("=", 1)[0].strip() for o in overrides]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise SmacJaxError(f"{flag} {', '.join(repeated)} given more than once; give each field once")
    own = dict(own_flags) if isinstance(own_flags, Mapping) else {k: k for k in own_flags}
    taken = [k for k in dict.fromkeys(keys) if k in own]
    if taken:
        raise SmacJaxError(f"{flag} {', '.join(taken)}: set by this script's own flag --{own[taken[0]]}; use that flag")


# Fields of configs/o2o.py that its config argument (TASK,OFFLINE,ONLINE) sets together with what
# follows from them: the task's dataset and budgets, each learner's hyperparameters and the task's
# settings for it. Changed alone by an override, they would leave the rest describing another job.
CONFIG_ARGUMENT_FIELDS = {"task": "TASK", "offline.learner": "OFFLINE", "online.learner": "ONLINE"}


def config_argument_overrides(argv: Sequence[str]) -> list[str]:
    """The ``--config.FIELD`` overrides in ``argv`` of fields the config argument sets (``CONFIG_ARGUMENT_FIELDS``)."""
    out = []
    for a in argv[1:]:
        if a == "--":
            break
        field = a[2:].split("=", 1)[0] if a.startswith("--config.") else ""
        if field[len("config."):] in CONFIG_ARGUMENT_FIELDS and field not in out:
            out.append(field)
    return out


def repeated_config_overrides(argv: Sequence[str]) -> list[str]:
    """The ``--config.FIELD`` overrides given more than once in ``argv`` (ml_collections would join
    a list field's values, and keep the last of any other field's, without a word)."""
    seen, repeated = set(), []
    for a in argv[1:]:
        if a == "--":
            break
        if a.startswith("--config."):
            field = a[2:].split("=", 1)[0]
            if field in seen and field not in repeated:
                repeated.append(field)
            seen.add(field)
    return repeated


def run_cli(main: Callable[[list[str]], None]) -> None:
    def parse(argv: list[str]) -> list[str]:
        repeated = repeated_config_overrides(argv)
        if repeated:
            fail(f"--{', --'.join(repeated)} given more than once; give each config field once")
        fixed = config_argument_overrides(argv)
        if fixed:
            what = CONFIG_ARGUMENT_FIELDS[fixed[0][len("config."):]]
            fail(f"--{fixed[0]}: set by the config argument, which brings the task's and the learners' settings "
                 f"with it; name it there instead (--config=configs/o2o.py:TASK,OFFLINE,ONLINE, its {what})")
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            fail(_flag_message(str(e)))
        except (AttributeError, KeyError) as e:  # ml_collections: an override names no config field
            fail(_config_key_message(e, argv))
        except (TypeError, ValueError) as e:  # ml_collections: an override of the wrong type
            overrides = any(a.startswith("--config.") for a in argv[1:])
            fail(f"bad --config override: {e}" if overrides else f"bad flag value: {e}")

    def guarded(argv: list[str]) -> None:
        if len(argv) > 1:  # e.g. "--overwrite false": absl sets --overwrite and leaves "false" here
            fail(f"unexpected argument(s) {' '.join(argv[1:])}: give flags as --name=value "
                 "(a boolean as --name, --noname or --name=false)")
        try:
            main(argv)
        except SmacJaxError as e:
            fail(str(e))
        except OSError as e:  # ml_collections raises a config file's load failure when the config is first read
            if "Configuration is not available" not in str(e):
                raise
            cause = e.__cause__ or e.__context__
            fail(f"--config: the config file could not be loaded ({cause or e}); give its path, e.g. "
                 "--config=configs/o2o.py:TASK from the repository's root")
        except KeyboardInterrupt:
            print("interrupted; the checkpoints written so far are kept, and a run resumes from them "
                  "(o2o.py: the same command with --resume)", file=sys.stderr)
            sys.exit(130)

    enable_compilation_cache()  # compiled programs kept on disk across launches (SMAC_JAX_XLA_CACHE=0: off)
    app.run(guarded, flags_parser=parse)
