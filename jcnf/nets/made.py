"""MADE: a masked MLP whose i-th outputs see only inputs 1..i-1, and the whole context.

Degrees (Germain et al. 2015): input i has degree i (1..D); hidden unit k
has degree k mod D (0..D-1); output dimension i has degree i. A hidden unit
sees the inputs of degree <= its own, an output sees the hidden units of
degree < its own, so output i depends on inputs 1..i-1 only. The context is
added to the first hidden layer unmasked; units of degree 0 see only the
context, which makes the first dimension (and D = 1) conditional too.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax import Array


def made_masks(dim: int, hidden: int, depth: int) -> list[np.ndarray]:
    """The masks [in, out] of the depth + 1 layers of a MADE (1 where a weight is allowed).

    Args:
      dim: D, the number of autoregressive inputs and output groups.
      hidden: width of each hidden layer.
      depth: number of hidden layers (>= 1).

    Returns:
      depth masks of hidden layers ([D, hidden], then [hidden, hidden]) and the
      output mask [hidden, D] (expand it per parameter of an output group).
    """
    inputs = np.arange(1, dim + 1)
    units = np.arange(hidden) % dim
    masks = [(units[None, :] >= inputs[:, None])]
    masks += [(units[None, :] >= units[:, None]) for _ in range(depth - 1)]
    masks.append(inputs[None, :] > units[:, None])
    return [mask.astype(np.float32) for mask in masks]


class MaskedDense(nn.Module):
    """A dense layer whose kernel is multiplied by a fixed 0/1 mask [in, out]."""

    mask: np.ndarray
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Maps x [..., in] to [..., out]."""
        kernel = self.param("kernel", self.kernel_init, self.mask.shape, x.dtype)
        bias = self.param("bias", nn.initializers.zeros, self.mask.shape[-1:], x.dtype)
        y = x @ (kernel * jnp.asarray(self.mask, x.dtype))
        return y + bias.reshape((1,) * (y.ndim - 1) + bias.shape)


class MADE(nn.Module):
    """(x [B, D], context [B, F] or None) -> autoregressive parameters [B, D, params_per_dim].

    The output layer starts at zero, so a fresh transform is the identity.

    Attributes:
      params_per_dim: outputs per dimension (e.g. 2 for an affine transform).
      hidden: width of the hidden layers.
      depth: number of hidden layers.
    """

    params_per_dim: int
    hidden: int = 64
    depth: int = 2

    @nn.compact
    def __call__(self, x: Array, context: Optional[Array]) -> Array:
        """Args: x [B, D]; context [B, F] or None. Returns [B, D, params_per_dim]."""
        dim = x.shape[-1]
        masks = made_masks(dim, self.hidden, self.depth)
        h = MaskedDense(masks[0], name="input")(x)
        if context is not None:
            h = h + nn.Dense(self.hidden, use_bias=False, name="context")(context)
        h = nn.relu(h)
        for index, mask in enumerate(masks[1:-1]):
            h = nn.relu(MaskedDense(mask, name=f"hidden_{index}")(h))
        # Output layout [D, P]: each of dimension i's P outputs carries mask column i.
        out_mask = np.repeat(masks[-1], self.params_per_dim, axis=1)
        out = MaskedDense(out_mask, kernel_init=nn.initializers.zeros, name="output")(h)
        return out.reshape(*out.shape[:-1], dim, self.params_per_dim)
