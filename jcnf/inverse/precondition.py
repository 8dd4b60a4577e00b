"""Preconditioning: the high-fidelity flow starts as a copy of the amortized one."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def precondition(params: Any) -> Any:
    """A deep copy of the amortized flow's whole parameter tree, to train further.

    Siahkoohi et al. (2021) initialize the non-amortized (high-fidelity) flow
    with every parameter of the amortized flow q_theta(x | y); the context is
    then fixed to y_obs and all parameters stay trainable. The copy owns new
    buffers: training it (jcnf's train steps donate their inputs) neither
    changes nor invalidates the original, which can still serve as the prior
    p_prior(x) = q_theta(x | y_obs).

    Args:
      params: any pytree of arrays, e.g. `fit(...).params`.

    Returns:
      A pytree equal to `params`, with the same structure and dtypes,
      sharing no buffer with it.
    """
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("`params` must be a non-empty pytree of arrays (a flow's parameters); got an empty tree.")
    bad = [type(leaf).__name__ for leaf in leaves if not hasattr(leaf, "shape")]
    if bad:
        raise ValueError(f"`params` must be a pytree of arrays; it has leaves of type {sorted(set(bad))}.")
    # jnp.array(copy=True) always allocates; device_put of a jax.Array may alias it.
    return jax.tree.map(lambda leaf: jnp.array(leaf, copy=True) if isinstance(leaf, jax.Array)
                        else np.array(leaf, copy=True), params)
