"""The one place jcnf first imports distrax.

distrax pulls in tfp-nightly's JAX backend, which reads attributes that JAX
has deprecated (``jax.core.pytype_aval_mappings``) at import time. That
DeprecationWarning is about tfp's code, not ours or the user's, and under
``python -W error`` it would make ``import jcnf`` fail. It is silenced here,
for warnings raised from tensorflow_probability's modules only, and only while
distrax is first imported; every other warning still reaches the user.
"""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"tensorflow_probability(\.|$)")
    import distrax

__all__ = ["distrax"]
