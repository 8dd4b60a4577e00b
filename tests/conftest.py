"""Shared configuration and helpers for jcnf's tests.

Tests marked `strict_ranks` run with implicit rank promotion turned into an
error: a silent broadcast of [B] against [B, 1] is the classic way a log-det
of shape [batch] becomes [batch, batch]. Tests marked `strict_dtypes` also
forbid implicit dtype promotion (`jax.numpy_dtype_promotion("strict")`).
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests._xla import xla_flags

# Before any test touches a backend (XLA reads its flags when the CPU client starts).
os.environ["XLA_FLAGS"] = xla_flags(base=os.environ.get("XLA_FLAGS", ""))


def pytest_configure(config):
    config.addinivalue_line("markers", "strict_ranks: run under jax.numpy_rank_promotion('raise')")
    config.addinivalue_line("markers", "strict_dtypes: run under jax.numpy_dtype_promotion('strict')")


@pytest.fixture(autouse=True)
def _promotion_rules(request):
    """Strict rank and dtype promotion for the tests marked so, JAX's defaults elsewhere."""
    ranks = "raise" if request.node.get_closest_marker("strict_ranks") else "allow"
    dtypes = "strict" if request.node.get_closest_marker("strict_dtypes") else "standard"
    with jax.numpy_rank_promotion(ranks), jax.numpy_dtype_promotion(dtypes):
        yield


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
    noisy = [leaf + scale * jax.random.normal(key, leaf.shape, leaf.dtype)
             for leaf, key in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(treedef, noisy)


def assert_close(actual, expected, atol, rtol=0.0):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), atol=atol, rtol=rtol)
