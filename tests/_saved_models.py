"""One tiny, perturbed model of every class a saved model may name, with example inputs.

`test_flows_saved.py` round-trips each through a fresh process and
`test_flows_trained.py` applies them; a class added to the registry must get
an entry here (a test compares the names).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jcnf
from jcnf.baselines import DiscretizedLogisticBaseline, FactorizedBernoulli
from jcnf.inverse import latent_correction


@dataclasses.dataclass(frozen=True)
class TinyModel:
    """A model, its parameters and a batch of 2 example inputs."""

    model: Any
    params: Any
    value: jax.Array
    context: jax.Array

    @property
    def context_shape(self) -> tuple[int, ...]:
        """One context's shape."""
        return tuple(self.context.shape[1:])


def _key(seed: int) -> jax.Array:
    return jax.random.PRNGKey(seed)


def random_params(model: Any, value_shape: tuple[int, ...], context_shape: tuple[int, ...], scale: float,
                  seed: int = 0) -> Any:
    """Parameters of `model` for these shapes, every entry N(0, scale^2).

    Only the shapes come from `model.init` (traced, not compiled): drawing the
    entries on the host costs no compilation, which a jitted init would.
    Random couplings, priors and heads are far from the identity, as trained ones are.
    """
    value = jax.ShapeDtypeStruct((1,) + tuple(value_shape), jnp.float32)
    context = jax.ShapeDtypeStruct((1,) + tuple(context_shape), jnp.float32)
    shapes = jax.eval_shape(model.init, _key(0), value, context)["params"]
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda leaf: jnp.asarray(scale * rng.standard_normal(leaf.shape), leaf.dtype), shapes)


def _tiny(model: Any, value: jax.Array, context: jax.Array, scale: float) -> TinyModel:
    return TinyModel(model, random_params(model, value.shape[1:], context.shape[1:], scale), value, context)


@functools.cache
def tiny_models() -> dict[str, TinyModel]:
    """Every registered class, by name, built once per process."""
    vector, vector_context = jax.random.normal(_key(1), (2, 2)), jax.random.normal(_key(2), (2, 3))
    image = jax.random.uniform(_key(3), (2, 4, 4, 1))
    low_res = image.reshape(2, 2, 2, 2, 2, 1).mean((2, 4))
    realnvp = _tiny(jcnf.ConditionalRealNVP(blocks=2, hidden=4), vector, vector_context, 0.1)
    corrected_model, corrected = latent_correction(realnvp.model, realnvp.params)
    corrected = {**corrected, "shift": jnp.array([0.3, -0.2]), "log_scale": jnp.array([0.1, -0.3])}
    return {
        "ConditionalRealNVP": realnvp,
        "ConditionalGlow": _tiny(jcnf.ConditionalGlow(levels=1, blocks=1, hidden=4, context_features=4,
                                                      encoder_blocks=1), image, image + 0.1, 0.05),
        "SuperResolutionGlow": _tiny(jcnf.SuperResolutionGlow(levels=1, blocks=1, hidden=4, context_features=4,
                                                              encoder_blocks=1), image, low_res, 0.2),
        "LatentCorrectedFlow": TinyModel(corrected_model, corrected, vector, vector_context),
        "DiscretizedLogisticBaseline": _tiny(DiscretizedLogisticBaseline(
            hidden=4, head_blocks=1, num_mixtures=2, context_features=4, encoder_blocks=1, num_bins=4),
            jnp.floor(image * 4) / 4, low_res, 0.3),
        "FactorizedBernoulli": _tiny(FactorizedBernoulli(features=4, blocks=1, hidden=4),
                                     (image < 0.3).astype(jnp.float32), image, 0.3),
        "ConditionalMAF": _tiny(jcnf.ConditionalMAF(blocks=2, hidden=4, transformer="spline", num_bins=3),
                                vector, vector_context, 0.1),
        # The embedding networks are saved as fields of the flow that owns them.
        "MLPEmbedding": _tiny(jcnf.ConditionalRealNVP(blocks=2, hidden=4, embedding=jcnf.nets.MLPEmbedding(
            features=3, hidden=4, depth=1)), vector, vector_context, 0.1),
        "DeepSetEmbedding": _tiny(jcnf.ConditionalMAF(blocks=1, hidden=4, embedding=jcnf.nets.DeepSetEmbedding(
            features=3, hidden=4, depth=1)), vector, jax.random.normal(_key(4), (2, 3, 2)), 0.1),
        "CNNEmbedding": _tiny(jcnf.ConditionalRealNVP(blocks=2, hidden=4, embedding=jcnf.nets.CNNEmbedding(
            features=3, channels=(2,))), vector, image, 0.1),
    }
