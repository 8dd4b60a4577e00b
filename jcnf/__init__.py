"""jcnf: conditional normalizing flows in JAX, on distrax, Flax and optax."""

from jcnf import baselines, data, dequantize
from jcnf import bijectors, distributions, flows, nets
from jcnf.flows import ConditionalFlow, ConditionalGlow, ConditionalRealNVP
from jcnf import inverse, train

__version__ = "0.1.0"

__all__ = ["bijectors", "distributions", "flows", "nets", "train", "ConditionalFlow", "ConditionalGlow",
           "ConditionalRealNVP", "__version__"]
