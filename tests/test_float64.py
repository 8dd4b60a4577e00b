"""Exactness in float64: log-dets equal slogdet of the dense Jacobian and round trips are exact.

float32 leaves ~1e-4 of rounding in a log-det of a few dozen terms, which can
hide a missing term of that size; in float64 the closed form and the
Jacobian agree to 1e-10 and a round trip to 1e-10 (dozens of operations of
unit-size values, each rounded at ~1e-16). Parameters are initialized in
float32 and cast, so the maps are those of `test_registry`.
"""

import chex
import jax
import jax.numpy as jnp
import pytest
from _registry import entries
from conftest import brute_force_log_det

_EXACT = 1e-10


_CASES = {}


def _case(entry):
    """The entry's float64 case, built once per test process (initializing is the slow part)."""
    if entry.name not in _CASES:
        _CASES[entry.name] = entry.make(jnp.float64)
    return _CASES[entry.name]


def _exact(prop):
    """The entries with property `prop` that also run in float64."""
    return [entry for entry in entries(prop) if "float64" not in entry.not_applicable]


@pytest.mark.parametrize("entry", _exact("log_det"), ids=lambda entry: entry.name)
def test_log_det_equals_the_jacobian_in_float64(entry):
    with jax.enable_x64(True):
        case = _case(entry)
        context = jax.tree.map(lambda leaf: leaf[:1], case.context)

        @jax.jit
        def log_dets(value):
            return case.forward(value[:1], context)[1], brute_force_log_det(
                lambda v: case.forward(v[None], context)[0][0], value[0])

        log_det, expected = log_dets(case.value)
        chex.assert_type(log_det, jnp.float64)
        chex.assert_trees_all_close(log_det[0], expected, atol=_EXACT, rtol=0)


@pytest.mark.parametrize("entry", _exact("round_trip"), ids=lambda entry: entry.name)
def test_round_trip_is_exact_in_float64(entry):
    with jax.enable_x64(True):
        case = _case(entry)

        @jax.jit
        def round_trip(value, context):
            output, log_det = case.forward(value, context)
            return (log_det, *case.inverse(output, context))

        log_det, back, inverse_log_det = round_trip(case.value, case.context)
        chex.assert_type([back, log_det], jnp.float64)
        chex.assert_trees_all_close(back, case.value, atol=_EXACT, rtol=0)
        chex.assert_trees_all_close(inverse_log_det, -log_det, atol=_EXACT, rtol=0)
