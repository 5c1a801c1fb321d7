"""Learners, registered by name. Importing this package registers every built-in learner.

To add one: write a module with a ``Learner`` subclass decorated with ``@register("name")``
and import it below (or anywhere before ``make_learner`` is called).
"""
from smac_jax.learners.base import (  # noqa: F401
    REGISTRY, ConfigError, Learner, TrainState, TransferError, available_learners,
    get_learner_class, make_learner, register, resolve_config,
)
from smac_jax.learners import aca, awac, bc, calql, cql, iql, sac, sacml, samg, smac, td3, td3bc  # noqa: F401  (registration)
