"""SuperResolutionGlow: a ConditionalGlow of the residual from the upsampled context.

Its round trip and log-det against the Jacobian are in test_registry.py.
"""

import functools
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import perturb
from jcnf.flows import ConditionalGlow, SuperResolutionGlow


@functools.lru_cache(maxsize=None)
def _setup():
    """Perturbed variables, a value and its context; cached: compiling init is the slow part."""
    model = SuperResolutionGlow(levels=1, steps=1, hidden=4, context_features=4, encoder_blocks=1)
    rng = jax.random.PRNGKey(0)
    value = jax.random.uniform(rng, (3, 2, 2, 1))
    context = value.reshape(3, 1, 2, 1, 2, 1).mean((2, 4))
    params = jax.jit(model.init)(rng, value, context)["params"]
    return model, {"params": perturb(params, jax.random.fold_in(rng, 1), 0.2)}, value, context


def test_is_a_glow_of_the_residual():
    model, variables, value, context = _setup()
    upsampled = jnp.repeat(jnp.repeat(context, 2, axis=1), 2, axis=2)
    glow = ConditionalGlow(levels=1, steps=1, hidden=4, context_features=4, encoder_blocks=1)
    ours = jax.jit(lambda v, c: model.apply(variables, v, c))(value, context)
    expected = jax.jit(lambda v, c: glow.apply(variables, v, c))(value - upsampled, context)
    # Same parameters, same float32 operations on the same residual.
    np.testing.assert_allclose(np.asarray(ours), np.asarray(expected), atol=1e-5)


def test_context_must_be_an_image_with_the_values_channels():
    model, variables, value, context = _setup()
    with pytest.raises(ValueError, match="1 channels"):
        model.init(jax.random.PRNGKey(0), value, jnp.zeros((3, 1, 1, 2)))
    with pytest.raises(ValueError, match="low-resolution image"):
        model.init(jax.random.PRNGKey(0), value, jnp.zeros((3, 4)))
    # Checked before the inverse is traced: sampling rejects a bad context too.
    with pytest.raises(ValueError, match="1 channels"):
        model.apply(variables, jax.random.PRNGKey(0), jnp.zeros((3, 1, 1, 2)), method="sample")
