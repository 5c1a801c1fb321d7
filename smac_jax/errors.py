"""The library's own errors: each one is a mistake in the input or the run's state that a user
can fix, and its message says what is wrong and where. Launch scripts print them as one line
(``smac_jax.cli``); anything else is a bug and keeps its traceback."""
from __future__ import annotations


class SmacJaxError(Exception):
    """Base class of every error the library raises on purpose."""


class ConfigError(SmacJaxError, ValueError):
    """A learner or pipeline config is invalid."""


class TransferError(SmacJaxError, ValueError):
    """An offline learner's state cannot be handed to the chosen online learner."""


class DatasetError(SmacJaxError, ValueError):
    """A dataset is missing, unreadable, or invalid."""


class DivergenceError(SmacJaxError, RuntimeError):
    """A loss, parameter or optimiser state became NaN/inf during training."""


class ShapeError(SmacJaxError, ValueError):
    """Arrays given to a learner, a loss or a training program have the wrong shape (a batch's
    field, the seed axis)."""


class ArgumentError(SmacJaxError, TypeError):
    """A function got an argument of the wrong kind: a batch that is not a ``Transitions``, another
    learner's parameters or config, a key that is not a PRNG key."""


class CheckpointMismatchError(SmacJaxError, ValueError):
    """A checkpoint whose tree does not match the state this run builds (another config, or a
    checkpoint written by another version of the library), or one that cannot be read."""


class WorkdirError(SmacJaxError, RuntimeError):
    """The workdir holds another run, or cannot be written."""


class ProtocolError(SmacJaxError, RuntimeError):
    """A learner broke the protocol the training loops rely on (``smac_jax/learners/CONTRIBUTING.md``):
    its update did not advance ``state.step``, returned a metric that is not one number, or trains
    a parameter group that has no optimiser."""


def need_count(value, name: str, where: str, minimum: int = 1) -> int:
    """``value`` as an int if it is an integer >= ``minimum`` (a Python or NumPy integer), else an
    :class:`ArgumentError` naming ``name`` and ``where`` (a float like 64.0 would reach JAX as a shape)."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ArgumentError(f"{where}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
