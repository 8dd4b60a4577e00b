"""Shared helpers for jcnf's tests."""

import jax
import jax.numpy as jnp
import numpy as np


def brute_force_log_det(fn, x):
    """log|det J| of `fn` at one event `x`, from the dense Jacobian of the flattened map.

    Reverse mode (`jax.jacrev`): the coupling networks' convolutions define
    only a reverse-mode derivative (`jcnf.nets.conv`).
    """
    shape = x.shape
    jac = jax.jacrev(lambda flat: fn(flat.reshape(shape)).reshape(-1))(x.reshape(-1))
    return jnp.linalg.slogdet(jac)[1]


def perturb(params, rng, scale=0.1):
    """Adds Gaussian noise to every parameter, so zero-initialised layers stop being the identity."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(rng, len(leaves))
    noisy = [leaf + scale * jax.random.normal(key, leaf.shape, leaf.dtype) for leaf, key in zip(leaves, keys)]
    return jax.tree.unflatten(treedef, noisy)


def assert_close(actual, expected, atol, rtol=0.0):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), atol=atol, rtol=rtol)
