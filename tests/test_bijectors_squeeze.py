"""Squeeze: a volume-preserving block reshape.

Tolerances: float32 maps of a few dozen dimensions; round trips agree to
~1e-5 and log-dets computed two ways (closed form vs slogdet of the dense
Jacobian) to ~1e-4 absolute. Invertibility, log-dets, jit/vmap and grads of
every bijector are in test_registry.py.
"""

import jax.numpy as jnp
import pytest
from conftest import assert_close

from jcnf import bijectors as jb

pytestmark = pytest.mark.strict_dtypes


def test_squeeze_is_volume_preserving_block_reshape():
    x = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3)
    y, log_det = jb.Squeeze().forward_and_log_det(x)
    assert y.shape == (2, 2, 2, 12)
    # The top-left 2x2 block of channel 0 lands in the first position's channels 0, 3, 6, 9.
    assert_close(y[0, 0, 0, ::3], jnp.array([x[0, 0, 0, 0], x[0, 0, 1, 0], x[0, 1, 0, 0], x[0, 1, 1, 0]]), atol=0)
    assert_close(jb.Squeeze().inverse(y), x, atol=0)
    assert_close(log_det, jnp.zeros(2), atol=0)
    with pytest.raises(ValueError, match="even height"):
        jb.Squeeze().forward(jnp.zeros((1, 3, 4, 1)))
