"""jcnf: conditional normalizing flows in JAX, on distrax, Flax and optax.

`import jcnf` loads the model side (bijectors, distributions, nets, flows);
the training engine, inverse problems, data, metrics, dequantizers and
baselines load on first use (`jcnf.train`, `jcnf.inverse`, ...), so a script
that only applies a flow does not import orbax, grain or scikit-learn.
"""

import importlib
import importlib.metadata

# First, so that distrax is first imported under jcnf._distrax's narrow warning filter.
import jcnf._distrax  # noqa: F401
from jcnf import bijectors, distributions, flows, nets
from jcnf.flows import ConditionalFlow, ConditionalGlow, ConditionalRealNVP, SuperResolutionGlow

__version__ = importlib.metadata.version("jcnf")

_LAZY_SUBPACKAGES = ("baselines", "data", "dequantize", "inverse", "metrics", "sharding", "train")

__all__ = ["ConditionalFlow", "ConditionalGlow", "ConditionalRealNVP", "SuperResolutionGlow", "__version__",
           "baselines", "bijectors", "data", "dequantize", "distributions", "flows", "inverse", "metrics", "nets",
           "sharding", "train"]


def __getattr__(name: str):
    if name in _LAZY_SUBPACKAGES:
        module = importlib.import_module(f"jcnf.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'jcnf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBPACKAGES))
