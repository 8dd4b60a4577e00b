"""jcnf: conditional normalizing flows in JAX, on distrax, Flax and optax."""

# First, so that distrax is first imported under jcnf._distrax's narrow warning filter.
import jcnf._distrax  # noqa: F401
from jcnf import baselines, bijectors, data, dequantize, distributions, flows, inverse, metrics, nets, train
from jcnf.flows import ConditionalFlow, ConditionalGlow, ConditionalMAF, ConditionalRealNVP, SuperResolutionGlow

__version__ = "0.1.0"

__all__ = ["baselines", "bijectors", "data", "dequantize", "distributions", "flows", "inverse", "metrics", "nets",
           "train", "ConditionalFlow", "ConditionalGlow", "ConditionalMAF", "ConditionalRealNVP", "SuperResolutionGlow",
           "__version__"]
