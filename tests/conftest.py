"""Shared configuration and helpers for jcnf's tests.

Promotion policy:

* Every test runs under `jax.numpy_rank_promotion("raise")`: a silent
  broadcast of [B] against [B, 1] is the classic way a log-det of shape
  [batch] becomes [batch, batch], so the library writes every broadcast out.
  A test that drives a third-party library which itself promotes ranks
  (distrax or TensorFlow Probability internals) opts out with
  `@pytest.mark.allow_rank_promotion("<why>")`.
* Tests marked `strict_dtypes` (whole modules: bijectors, flows,
  distributions, dequantizers, metrics) also run under
  `jax.numpy_dtype_promotion("strict")`, so float32 never meets int32 or
  float64 by accident; Python scalars stay weakly typed and are allowed. A
  test that calls distrax's rational-quadratic spline (jcnf's own is
  compared against it), which concatenates int32 and float32 arrays
  internally, opts out with `@pytest.mark.allow_dtype_promotion("<why>")`.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jcnf
from tests._xla import xla_flags

# Before any test touches a backend (XLA reads its flags when the CPU client starts).
os.environ["XLA_FLAGS"] = xla_flags(base=os.environ.get("XLA_FLAGS", ""))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "allow_rank_promotion(reason): run under JAX's default rank promotion")
    config.addinivalue_line("markers", "strict_dtypes: run under jax.numpy_dtype_promotion('strict')")
    config.addinivalue_line(
        "markers", "allow_dtype_promotion(reason): JAX's standard dtype promotion despite strict_dtypes")


@pytest.fixture(autouse=True)
def _promotion_rules(request):
    """Rank promotion raises unless the test opts out; strict dtypes for the tests marked so."""
    rank_opt_out = _opt_out(request, "allow_rank_promotion")
    dtype_opt_out = _opt_out(request, "allow_dtype_promotion")
    ranks = "allow" if rank_opt_out else "raise"
    strict = request.node.get_closest_marker("strict_dtypes") is not None and not dtype_opt_out
    dtypes = "strict" if strict else "standard"
    with jax.numpy_rank_promotion(ranks), jax.numpy_dtype_promotion(dtypes):
        yield


def _opt_out(request, name):
    """Whether the test carries the opt-out marker `name`, which must give its reason."""
    marker = request.node.get_closest_marker(name)
    if marker is not None and not marker.args:
        raise ValueError(f"{name} needs a reason: @pytest.mark.{name}('why')")
    return marker is not None


def brute_force_log_det(fn, x):
    """log|det J| of `fn` at one event `x`, from the dense Jacobian of the flattened map.

    Reverse mode (`jax.jacrev`); `test_registry` checks forward mode against it. Compiled, also when
    called outside `jax.jit`: op by op, a flow's Jacobian would dispatch hundreds of small kernels, each
    compiled on first use.
    """
    shape = x.shape
    jac = jax.jit(jax.jacrev(lambda flat: fn(flat.reshape(shape)).reshape(-1)))(x.reshape(-1))
    return jnp.linalg.slogdet(jac)[1]


def perturb(params, rng, scale=0.1):
    """Adds Gaussian noise to every parameter, so zero-initialised layers stop being the identity."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(rng, len(leaves))
    noisy = [leaf + scale * jax.random.normal(key, leaf.shape, leaf.dtype)
             for leaf, key in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(treedef, noisy)


def perturbed_realnvp(layers: int, hidden: int, batch: int):
    """(model, variables, value [batch, 3], context [batch, 2]): a small ConditionalRealNVP, perturbed off identity."""
    rng = jax.random.PRNGKey(0)
    model = jcnf.ConditionalRealNVP(blocks=layers, hidden=hidden)
    value = jax.random.normal(rng, (batch, 3))
    context = jax.random.normal(jax.random.PRNGKey(1), (batch, 2))
    variables = perturb(jax.jit(model.init)(rng, value, context), jax.random.PRNGKey(2), 0.1)
    return model, variables, value, context


def assert_close(actual, expected, atol, rtol=0.0):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), atol=atol, rtol=rtol)
