"""Romberg's compressive-sensing operator: a random convolution followed by random subsampling."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from jcnf.inverse.linear_operator import LinearOperator, Params, as_image_shape


def _hermitian_unit_phases(uniforms: Array) -> Array:
    """Random sigma [H, W] with |sigma| = 1 and sigma[-k] = conj(sigma[k]).

    The antisymmetric part theta[k] - theta[-k] of i.i.d. uniform angles
    theta = 2 pi u is again uniform (mod 2 pi) on every frequency that differs
    from its mirror, and exactly zero on the self-conjugate ones (0 and N/2
    along each axis); those get the sign of u - 1/2 instead, since +-1 are the
    only real unit-modulus values.

    Args:
      uniforms: i.i.d. uniform [0, 1) values, shape [H, W].

    Returns:
      Complex phases, shape [H, W], complex64.
    """
    height, width = uniforms.shape
    angles = 2 * math.pi * uniforms
    mirror_rows = (-np.arange(height)) % height
    mirror_cols = (-np.arange(width)) % width
    antisymmetric = angles - angles[mirror_rows][:, mirror_cols]
    self_conjugate = (np.arange(height) == mirror_rows)[:, None] & (np.arange(width) == mirror_cols)[None, :]
    signs = jnp.where(uniforms < 0.5, 1.0, -1.0)
    return jnp.where(self_conjugate, signs, jnp.exp(1j * antisymmetric)).astype(jnp.complex64)


def _circular_convolve(x: Array, phases: Array) -> Array:
    """Re(ifft2(phases * fft2(x))) over axes 1, 2 of x [B, H, W, ...].

    With Hermitian phases the imaginary part is rounding only. Taking the
    real part keeps the adjoint exact even so: for a complex matrix M, the
    real map x -> Re(M x) has transpose y -> Re(M^H y).
    """
    spectrum = jnp.fft.fft2(x, axes=(1, 2))
    extra_axes = (1,) * (x.ndim - 3)
    return jnp.real(jnp.fft.ifft2(spectrum * phases.reshape((1,) + phases.shape + extra_axes), axes=(1, 2)))


@jax.jit
def _romberg_forward(params: Params, x: Array) -> Array:
    convolved = _circular_convolve(x, params["phases"]) * params["signs"][None]
    return convolved.reshape(x.shape[0], -1)[:, params["kept"]].astype(x.dtype)


@jax.jit
def _romberg_adjoint(params: Params, y: Array) -> Array:
    image_shape = params["signs"].shape
    flat = jnp.zeros((y.shape[0], math.prod(image_shape)), y.dtype).at[:, params["kept"]].set(y)
    unsigned = flat.reshape((y.shape[0],) + image_shape) * params["signs"][None]
    return _circular_convolve(unsigned, jnp.conj(params["phases"])).astype(y.dtype)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _romberg_params(rng: Array, image_shape: tuple[int, ...], num_kept: int) -> Params:
    """Phases, signs and kept indices from one draw of uniforms (one random kernel to compile)."""
    # A flat draw reshaped: XLA:CPU compiles threefry for small multi-axis
    # shapes up to 10x slower than for the same number of values on one axis
    # (seconds instead of a fraction of one, measured with jax 0.10.2).
    uniforms = jax.random.uniform(rng, (3 * math.prod(image_shape),)).reshape((3,) + image_shape)
    phases = _hermitian_unit_phases(uniforms[0].reshape(image_shape[:2] + (-1,))[..., 0])
    signs = jnp.where(uniforms[1] < 0.5, 1.0, -1.0).astype(jnp.float32)
    # The ranks of i.i.d. uniforms are a uniformly random permutation.
    kept = jnp.sort(jnp.argsort(uniforms[2].reshape(-1))[:num_kept]).astype(jnp.int32)
    return {"phases": phases, "signs": signs, "kept": kept}


def random_convolution_subsample(rng: Array, image_shape: tuple[int, ...],
                                 keep_fraction: float = 0.5) -> LinearOperator:
    """Romberg's random convolution followed by random subsampling.

    F = S D C, where C = ifft2 diag(sigma) fft2 is a circular convolution with
    random unit-modulus Hermitian-symmetric Fourier phases sigma (real and
    orthogonal), D multiplies by random signs, and S keeps a random subset of
    round(keep_fraction * size) samples, in increasing flat (row-major) order.
    C and D are orthogonal, so F F^T = I: the rows of F are orthonormal, and
    noise of standard deviation sigma on y is sigma in the image's units.

    The convolution runs over height and width; with a channel axis, every
    channel uses the same phases (Glow-style images are [H, W, 1]). Signs and
    kept samples are drawn over the whole [H, W(, C)] array.

    Args:
      rng: a `jax.random` key.
      image_shape: (height, width) or (height, width, channels).
      keep_fraction: fraction of the samples kept, in (0, 1].

    Returns:
      An operator with input_shape = image_shape and output_shape (m,), m the
      number of kept samples.
    """
    dims = as_image_shape(image_shape)
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"`keep_fraction` must be in (0, 1]; got {keep_fraction}.")
    size = math.prod(dims)
    num_kept = max(1, int(round(keep_fraction * size)))
    params = _romberg_params(rng, dims, num_kept)
    return LinearOperator(dims, (num_kept,), params, _romberg_forward, _romberg_adjoint,
                          f"random convolution keeping {num_kept}/{size}")
