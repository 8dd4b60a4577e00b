"""Sampling is finite for every ready-made flow and learned dequantizer, whatever the context.

A trained flow meets contexts unlike its training data; its inverse (sampling)
pass must still return finite values. The flows here have strongly perturbed
parameters (every parameter moved by N(0, 0.5^2), far from a fresh flow's
identity couplings) and are sampled at T in {0, 0.5, 0.8, 1} on
out-of-distribution contexts: constant black, constant white, noise of
amplitude 100, and a crop of a photograph no experiment uses (the Hubble
deep field shipped with scikit-image).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import perturb
from skimage import data as skdata

import jcnf

pytestmark = pytest.mark.strict_dtypes
TEMPERATURES = (0.0, 0.5, 0.8, 1.0)
STRONG = 0.5


def _contexts(shape):
    """Out-of-distribution contexts of `shape` [4, ...] stacked on a leading axis, one per kind."""
    size = int(np.prod(shape[1:]))
    photo = skdata.hubble_deep_field()[100:100 + 32, 200:200 + 32].astype(np.float32) / 255.0
    photo = np.resize(photo.reshape(-1), (shape[0], size)).reshape(shape)
    noise = 100.0 * np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return {"black": np.zeros(shape, np.float32), "white": np.ones(shape, np.float32), "noise": noise,
            "photo": photo}


FLOWS = {
    "realnvp": (lambda: jcnf.ConditionalRealNVP(blocks=6, hidden=16), (4, 6), (4, 5)),
    "glow": (lambda: jcnf.ConditionalGlow(levels=2, blocks=4, hidden=16, context_features=8, encoder_blocks=1),
             (4, 8, 8, 3), (4, 4, 4, 3)),
    "superres_glow": (lambda: jcnf.flows.SuperResolutionGlow(levels=2, blocks=4, hidden=16, context_features=8,
                                                             encoder_blocks=1), (4, 8, 8, 3), (4, 4, 4, 3)),
}


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_samples_are_finite_on_out_of_distribution_contexts(name):
    make, value_shape, context_shape = FLOWS[name]
    model = make()
    value = jax.random.uniform(jax.random.PRNGKey(1), value_shape)
    context = jax.random.uniform(jax.random.PRNGKey(2), context_shape)
    variables = perturb(jax.jit(model.init)(jax.random.PRNGKey(0), value, context), jax.random.PRNGKey(3), STRONG)

    @jax.jit
    def samples(contexts):
        # One sampler in the program, looped over every context kind and temperature (a traced scale).
        def draw(c, t):
            return model.apply(variables, jax.random.PRNGKey(4), c, t, method="sample_and_log_prob")[0]
        return jax.lax.map(lambda c: jax.lax.map(lambda t: draw(c, t), jnp.asarray(TEMPERATURES)), contexts)

    contexts = _contexts(context_shape)
    drawn_by_kind = samples(np.stack(list(contexts.values())))
    for kind, drawn in zip(contexts, drawn_by_kind, strict=True):
        finite = np.isfinite(np.asarray(drawn)).reshape(len(TEMPERATURES), -1).all(axis=1)
        assert finite.all(), f"{kind}: non-finite samples at T = {np.asarray(TEMPERATURES)[~finite]}"


def test_learned_dequantizers_draw_finite_noise_on_out_of_distribution_contexts():
    value = jnp.round(jax.random.uniform(jax.random.PRNGKey(1), (4, 4, 4, 1)))
    example = {"context": jax.random.uniform(jax.random.PRNGKey(2), (4, 4, 4, 3))}
    for dequantizer in (jcnf.dequantize.BinaryDequantizer(hidden=8),
                        jcnf.dequantize.VariationalDequantizer(num_bins=2, levels=1, blocks=2, hidden=8,
                                                               context_features=4)):
        variables = jax.jit(dequantizer.init)(jax.random.PRNGKey(0), jax.random.PRNGKey(3), value, example)
        variables = {"params": perturb(variables["params"], jax.random.PRNGKey(4), STRONG)}
        apply = jax.jit(dequantizer.apply)
        for kind, context in _contexts((4, 4, 4, 3)).items():
            dequantized, log_correction = apply(variables, jax.random.PRNGKey(5), value, {"context": context})
            assert np.isfinite(np.asarray(dequantized)).all() and np.isfinite(np.asarray(log_correction)).all(), (
                type(dequantizer).__name__, kind)
