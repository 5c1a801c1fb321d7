"""SAMG (State-Action-conditional offline Model Guidance): the C-VAE coefficient model.

* :mod:`~smac_jax.samg.cvae`: the C-VAE over (s, a) -> s' and its training;
* :mod:`~smac_jax.samg.confidence`: the latent normals and the coefficient p(s, a);
* :mod:`~smac_jax.samg.adaptive`: the periodic adaptive update of the model;
* :mod:`~smac_jax.samg.store`: fit, save and load the model for a dataset.

The learners that use it are in :mod:`smac_jax.learners.samg`; docs/samg.md has the equations.
"""
