"""smac_jax: offline-to-online RL in JAX."""
