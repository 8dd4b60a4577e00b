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

# The longest tests, longest first (seconds, measured with one pytest process on a loaded 2-core machine): they
# start before the rest, so that under `pytest -n 2` the two workers end together instead of one finishing a
# long test alone.
LONGEST_FIRST = (
    "tests/test_experiments_seismic.py::test_seismic_smoke_one_and_two_processes",  # 165
    "tests/test_experiments_superres.py::test_superres_smoke_one_and_two_processes_then_resumes",  # 95
    "tests/test_experiments_demo.py::test_demo_learns_the_ring_on_one_and_two_processes",  # 95
    "tests/test_experiments_rosenbrock.py::test_rosenbrock_smoke_one_and_two_processes",  # 90
    "tests/test_experiments_vessels.py::test_vessels_smoke_one_and_two_processes",  # 60
    "tests/test_readme.py::test_readme_training_example_runs",  # 21
    "tests/test_inverse_fit_two_processes.py::test_two_processes_train_on_the_same_latents_as_one",  # 17
    "tests/test_train_checkpoint.py::test_processes_restore_the_same_step_when_one_cannot_read_the_newest",  # 17
    "tests/test_train_checkpoint.py::test_killed_run_resumes_from_its_last_checkpoint",  # 14
    "tests/test_dequantize_variational.py::test_trains_jointly_with_a_flow",  # 14
    "tests/test_benchmarks.py::test_npe_tiny_run_scores_both_estimators_and_writes_the_record",  # 12
)


def pytest_collection_modifyitems(items):
    """Moves the tests of LONGEST_FIRST to the front, in its order; the others keep theirs."""
    rank = {nodeid: i for i, nodeid in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid, len(rank)))


def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's load scheduling, handing each worker one test at a time, in the collection order.

    By default a worker is sent tests in chunks; one at a time, no long test waits in one worker's queue
    while the other worker runs out of work. Left to xdist under other `--dist` modes, an explicit
    `--maxschedchunk`, or an xdist without that option.
    """
    from xdist.scheduler import LoadScheduling

    if config.getoption("dist") != "load" or getattr(config.option, "maxschedchunk", 0) is not None:
        return None
    config.option.maxschedchunk = 1
    return LoadScheduling(config, log)


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
