"""jcnf.dequantize.base: plain functions and Flax modules behind one dequantizer protocol."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from jcnf.dequantize.base import apply_dequantizer, init_dequantizer

pytestmark = pytest.mark.strict_dtypes

RNG = jax.random.PRNGKey(0)
VALUE = jnp.arange(6, dtype=jnp.float32).reshape(2, 3)


def _shift_by_half(rng, value, batch):
    del rng, batch
    return value + 0.5, jnp.zeros(value.shape[:1])


class _LearnedShift(nn.Module):
    """value + a learned per-feature shift; the log-correction is the sum of the shifts."""

    @nn.compact
    def __call__(self, rng, value, batch):
        del rng, batch
        shift = self.param("shift", nn.initializers.constant(0.25), value.shape[1:])
        return value + shift[None], jnp.broadcast_to(jnp.sum(shift), value.shape[:1])


def test_a_plain_function_has_no_parameters_and_is_called_as_is():
    assert init_dequantizer(_shift_by_half, RNG, VALUE, {"value": VALUE}) is None
    out, log_correction = apply_dequantizer(_shift_by_half, {}, RNG, VALUE, {"value": VALUE})
    chex.assert_trees_all_close(out, VALUE + 0.5, atol=0, rtol=0)
    chex.assert_shape(log_correction, (2,))


def test_a_module_is_initialized_and_applied_with_its_own_parameters():
    params = init_dequantizer(_LearnedShift(), RNG, VALUE, {"value": VALUE})
    chex.assert_trees_all_close(params, {"shift": jnp.full((3,), 0.25)}, atol=0, rtol=0)
    moved = {"flow": {}, "dequantizer": {"shift": jnp.ones(3)}}
    out, log_correction = apply_dequantizer(_LearnedShift(), moved, RNG, VALUE, {"value": VALUE})
    chex.assert_trees_all_close((out, log_correction), (VALUE + 1.0, jnp.full((2,), 3.0)), atol=0, rtol=0)


def test_a_module_without_its_parameters_raises_naming_them():
    with pytest.raises(ValueError, match=r"params\['dequantizer'\]"):
        apply_dequantizer(_LearnedShift(), {"flow": {}}, RNG, VALUE, {"value": VALUE})
