"""Forward operators F of inverse problems y = F(x) + eps, with exact adjoints.

A `LinearOperator` is a pytree: its arrays (a matrix, Fourier phases, a blur
kernel, kept indices) are leaves and its shapes and maps are static, so an
operator can be closed over by a jitted loss or passed to `jax.jit` as an
argument without recompiling for every new draw of the same kind.

Every `apply` and `adjoint` takes a leading batch axis, [batch, *input_shape]
and [batch, *output_shape], and checks the shape before tracing. The adjoint is
the exact transpose of `apply` as a real matrix, so <F x, y> = <x, F^T y> holds
to float32 rounding; tests check it for every constructor.

The batch maps are jitted, so eager calls compile once per shape rather than
once per primitive. Matrix products and convolutions run at
`Precision.HIGHEST`: on GPUs the default float32 precision may use TF32
(10-bit mantissa), which would break the adjoint identity and bias the
likelihood of a well-fit posterior.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax

from jcnf._checks import check_int, describe

_HIGHEST = lax.Precision.HIGHEST

# A Gaussian kernel is truncated at this many standard deviations, as
# scipy.ndimage.gaussian_filter does by default; the mass beyond is < 1e-4.
_GAUSSIAN_TRUNCATE = 4.0

# Seed of `paper_toy_operator`: a fixed draw, so every experiment on the 2D
# toy problem sees the same matrix A.
_PAPER_TOY_SEED = 2021

Params = dict[str, Array]
_BatchMap = Callable[[Params, Array], Array]


@functools.partial(jax.tree_util.register_dataclass, data_fields=["params"],
                   meta_fields=["input_shape", "output_shape", "forward_fn", "adjoint_fn", "name"])
@dataclasses.dataclass(frozen=True, eq=False)
class LinearOperator:
    """A linear map F: R^input_shape -> R^output_shape with its adjoint F^T.

    Build one with a constructor of this module (`dense`, `identity`,
    `random_convolution_subsample`, `blur_downsample`, `rosenbrock_operator`),
    not directly.

    Attributes:
      input_shape: shape of one unknown x, without the batch axis.
      output_shape: shape of one observation y, without the batch axis.
      params: the operator's arrays (pytree leaves).
      forward_fn: (params, x [B, *input_shape]) -> y [B, *output_shape].
      adjoint_fn: (params, y [B, *output_shape]) -> x [B, *input_shape].
      name: what the operator is, for messages and reprs.
    """

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: Params
    forward_fn: _BatchMap
    adjoint_fn: _BatchMap
    name: str

    def apply(self, x: Array) -> Array:
        """F x for a batch.

        Args:
          x: unknowns, shape [batch, *input_shape].

        Returns:
          Observations without noise, shape [batch, *output_shape].
        """
        _check_batched("x", x, self.input_shape, self.name)
        return self.forward_fn(self.params, x)

    def adjoint(self, y: Array) -> Array:
        """F^T y for a batch.

        Args:
          y: observations, shape [batch, *output_shape].

        Returns:
          Back-projections, shape [batch, *input_shape].
        """
        _check_batched("y", y, self.output_shape, self.name)
        return self.adjoint_fn(self.params, y)

    def __repr__(self) -> str:
        return f"LinearOperator({self.name}: {list(self.input_shape)} -> {list(self.output_shape)})"


def _check_batched(name: str, value: Any, item_shape: tuple[int, ...], operator_name: str) -> None:
    """Raises ValueError unless `value` is a float array of shape [batch, *item_shape]."""
    expected = "[batch, " + ", ".join(map(str, item_shape)) + "]" if item_shape else "[batch]"
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise ValueError(f"`{name}` for {operator_name} must be an array of shape {expected}; "
                         f"got {type(value).__name__}.")
    if value.ndim != len(item_shape) + 1 or tuple(value.shape[1:]) != item_shape:
        raise ValueError(f"`{name}` for {operator_name} must have shape {expected} (a leading batch axis, "
                         f"then {list(item_shape)}); got {describe(value)}.")
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise ValueError(f"`{name}` for {operator_name} must be a floating-point array of shape {expected}; "
                         f"got {describe(value)}.")


def _as_shape(name: str, shape: Any) -> tuple[int, ...]:
    """A shape argument as a tuple of positive Python ints, or ValueError."""
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a tuple of positive ints; got {shape!r}.") from None
    if not dims or any(d < 1 for d in dims) or any(int(d) != d for d in shape):
        raise ValueError(f"`{name}` must be a non-empty tuple of positive ints; got {shape!r}.")
    return dims


def _as_image_shape(image_shape: Any) -> tuple[int, ...]:
    dims = _as_shape("image_shape", image_shape)
    if len(dims) not in (2, 3):
        raise ValueError(f"`image_shape` must be (height, width) or (height, width, channels); got {image_shape!r}.")
    return dims


# --------------------------------------------------------------------------
# Dense matrices and the identity.
# --------------------------------------------------------------------------


@jax.jit
def _dense_forward(params: Params, x: Array) -> Array:
    return jnp.matmul(x, params["matrix"].T, precision=_HIGHEST)


@jax.jit
def _dense_adjoint(params: Params, y: Array) -> Array:
    return jnp.matmul(y, params["matrix"], precision=_HIGHEST)


def dense(matrix: Array) -> LinearOperator:
    """F x = matrix @ x for vectors.

    Args:
      matrix: shape [m, n], floating point.

    Returns:
      An operator with input_shape (n,) and output_shape (m,).
    """
    if not hasattr(matrix, "ndim") or matrix.ndim != 2:
        raise ValueError(f"`matrix` must have shape [m, n]; got {describe(matrix)}.")
    matrix = jnp.asarray(matrix)
    if not jnp.issubdtype(matrix.dtype, jnp.floating):
        raise ValueError(f"`matrix` must be floating point; got {describe(matrix)}.")
    rows, cols = matrix.shape
    return LinearOperator((cols,), (rows,), {"matrix": matrix}, _dense_forward, _dense_adjoint,
                          f"dense {rows}x{cols}")


def _identity_map(params: Params, x: Array) -> Array:
    del params
    return x


def identity(shape: Union[int, tuple[int, ...]]) -> LinearOperator:
    """F x = x: denoising, the low-fidelity problem of the 2D toy example.

    Args:
      shape: shape of one item, e.g. (2,) or (64, 64, 1).

    Returns:
      An operator with input_shape = output_shape = shape.
    """
    dims = _as_shape("shape", shape)
    return LinearOperator(dims, dims, {}, _identity_map, _identity_map, "identity")


# --------------------------------------------------------------------------
# Random convolution and subsampling (Romberg's compressive sensing operator).
# --------------------------------------------------------------------------


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
    return jnp.real(jnp.fft.ifft2(spectrum * phases.reshape(phases.shape + extra_axes), axes=(1, 2)))


@jax.jit
def _romberg_forward(params: Params, x: Array) -> Array:
    convolved = _circular_convolve(x, params["phases"]) * params["signs"]
    return convolved.reshape(x.shape[0], -1)[:, params["kept"]].astype(x.dtype)


@jax.jit
def _romberg_adjoint(params: Params, y: Array) -> Array:
    image_shape = params["signs"].shape
    flat = jnp.zeros((y.shape[0], math.prod(image_shape)), y.dtype).at[:, params["kept"]].set(y)
    unsigned = flat.reshape((y.shape[0],) + image_shape) * params["signs"]
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
    dims = _as_image_shape(image_shape)
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"`keep_fraction` must be in (0, 1]; got {keep_fraction}.")
    size = math.prod(dims)
    num_kept = max(1, int(round(keep_fraction * size)))
    params = _romberg_params(rng, dims, num_kept)
    return LinearOperator(dims, (num_kept,), params, _romberg_forward, _romberg_adjoint,
                          f"random convolution keeping {num_kept}/{size}")


# --------------------------------------------------------------------------
# Gaussian blur and decimation.
# --------------------------------------------------------------------------


def _gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalized 1D Gaussian of odd length 2 r + 1, r = round(4 sigma); [1.] for sigma 0."""
    radius = int(_GAUSSIAN_TRUNCATE * sigma + 0.5)
    if radius == 0:
        return np.ones(1, np.float32)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    return (kernel / kernel.sum()).astype(np.float32)


def _separable_blur(images: Array, kernel: Array) -> Array:
    """Zero-padded 'same' blur of images [B, H, W, C] by kernel (x) kernel.

    The kernel is symmetric and odd-length, so each 1D pass is a symmetric
    Toeplitz matrix and the blur is self-adjoint.
    """
    channels = images.shape[-1]
    size = kernel.shape[0]
    dimension_numbers = ("NHWC", "HWIO", "NHWC")
    for filter_shape in ((size, 1, 1, channels), (1, size, 1, channels)):
        filters = jnp.broadcast_to(kernel.reshape(filter_shape[:2] + (1, 1)), filter_shape).astype(images.dtype)
        images = lax.conv_general_dilated(images, filters, (1, 1), "SAME", dimension_numbers=dimension_numbers,
                                          feature_group_count=channels, precision=_HIGHEST)
    return images


def _with_channels(x: Array, item_ndim: int) -> Array:
    return x if item_ndim == 3 else x[..., None]


def _blur_downsample_forward(params: Params, x: Array, factor: int) -> Array:
    item_ndim = x.ndim - 1
    blurred = _separable_blur(_with_channels(x, item_ndim), params["kernel"])
    decimated = blurred[:, ::factor, ::factor, :]
    return decimated if item_ndim == 3 else decimated[..., 0]


def _blur_downsample_adjoint(params: Params, y: Array, factor: int, image_hw: tuple[int, int]) -> Array:
    item_ndim = y.ndim - 1
    y = _with_channels(y, item_ndim)
    upsampled = jnp.zeros((y.shape[0],) + image_hw + (y.shape[-1],), y.dtype).at[:, ::factor, ::factor, :].set(y)
    blurred = _separable_blur(upsampled, params["kernel"])
    return blurred if item_ndim == 3 else blurred[..., 0]


@functools.lru_cache(maxsize=None)
def _blur_downsample_maps(factor: int, image_hw: tuple[int, int]) -> tuple[_BatchMap, _BatchMap]:
    """One (forward, adjoint) pair per (factor, size): equal static maps keep jit caches warm."""
    return (jax.jit(functools.partial(_blur_downsample_forward, factor=factor)),
            jax.jit(functools.partial(_blur_downsample_adjoint, factor=factor, image_hw=image_hw)))


def blur_downsample(image_shape: tuple[int, ...], factor: int, sigma: float) -> LinearOperator:
    """Gaussian blur, then keeping every `factor`-th pixel along height and width.

    The blur is separable, truncated at 4 sigma and zero-padded at the borders
    (so the operator is an exact symmetric convolution matrix, not a
    reflection); decimation keeps pixels (i * factor, j * factor). The adjoint
    inserts zeros between the kept pixels and blurs again.

    Args:
      image_shape: (height, width) or (height, width, channels).
      factor: integer decimation factor >= 1.
      sigma: blur standard deviation in pixels, >= 0 (0: no blur).

    Returns:
      An operator with input_shape = image_shape and output_shape
      (ceil(H / factor), ceil(W / factor)[, channels]).
    """
    dims = _as_image_shape(image_shape)
    check_int("factor", factor)
    if not sigma >= 0.0:
        raise ValueError(f"`sigma` must be >= 0; got {sigma}.")
    factor = int(factor)
    out_dims = (-(-dims[0] // factor), -(-dims[1] // factor)) + dims[2:]
    forward_fn, adjoint_fn = _blur_downsample_maps(factor, dims[:2])
    params = {"kernel": jnp.asarray(_gaussian_kernel(float(sigma)))}
    return LinearOperator(dims, out_dims, params, forward_fn, adjoint_fn,
                          f"Gaussian blur (sigma {sigma}) and decimation by {factor}")


# --------------------------------------------------------------------------
# The 2D toy problem of Siahkoohi et al. (2021).
# --------------------------------------------------------------------------


def rosenbrock_operator(rng: Array) -> LinearOperator:
    """The toy problem's A = (randn(2, 2) + 3 I) / ||randn(2, 2) + 3 I||_2.

    Dividing by the spectral norm makes ||A||_2 = 1; adding 3 I keeps A close
    to a multiple of the identity and well conditioned.

    Args:
      rng: a `jax.random` key.

    Returns:
      A dense operator with input_shape = output_shape = (2,).
    """
    return dense(_toy_matrix(rng))


@jax.jit
def _toy_matrix(rng: Array) -> Array:
    # Drawn flat and reshaped, like the Romberg operator's randomness.
    unnormalized = jax.random.normal(rng, (4,), jnp.float32).reshape(2, 2) + 3.0 * jnp.eye(2, dtype=jnp.float32)
    return unnormalized / jnp.linalg.norm(unnormalized, ord=2)


def paper_toy_operator() -> LinearOperator:
    """`rosenbrock_operator` of a fixed key (seed 2021): the same A in every experiment."""
    return rosenbrock_operator(jax.random.PRNGKey(_PAPER_TOY_SEED))


# --------------------------------------------------------------------------
# Likelihood.
# --------------------------------------------------------------------------


def gaussian_log_likelihood(operator: Union[LinearOperator, Callable[[Array], Array]], x: Array,
                            y_obs: Array, noise_std: Union[float, Array],
                            include_normalizer: bool = False) -> Array:
    """log N(y_obs; F(x), noise_std^2 I) for each x of a batch.

    By default the constant -m/2 log(2 pi noise_std^2) is dropped, leaving
    -||F(x) - y_obs||^2 / (2 noise_std^2): the data term of the reverse-KL
    loss, whose gradient is all that training uses. Pass
    `include_normalizer=True` for the normalized density (needed when
    comparing evidences or noise levels).

    Args:
      operator: a `LinearOperator`, or any function mapping x [B, ...] to
        predictions [B, *observation_shape] (a nonlinear forward model).
      x: unknowns, shape [batch, *input_shape].
      y_obs: the observation, shape [*output_shape] (one observation shared by
        the batch) or [batch, *output_shape].
      noise_std: noise standard deviation sigma > 0, a scalar.
      include_normalizer: add -m/2 log(2 pi sigma^2), m the observation size.

    Returns:
      Log-likelihoods, shape [batch].
    """
    # A concrete sigma is checked here; a traced one (inside jit) is the caller's to check.
    if not isinstance(noise_std, jax.core.Tracer) and not np.all(np.asarray(noise_std) > 0):
        raise ValueError(f"`noise_std` must be > 0; got {noise_std}.")
    predicted = operator.apply(x) if isinstance(operator, LinearOperator) else operator(x)
    y_obs = jnp.asarray(y_obs)
    item_shape = tuple(predicted.shape[1:])
    if tuple(y_obs.shape) not in (item_shape, tuple(predicted.shape)):
        raise ValueError(f"`y_obs` must have shape {list(item_shape)} or [batch, {', '.join(map(str, item_shape))}] "
                         f"to match the operator's output; got {describe(y_obs)}.")
    residual = (predicted - y_obs).reshape(predicted.shape[0], -1)
    log_likelihood = -0.5 * jnp.sum(residual ** 2, axis=1) / noise_std ** 2
    if include_normalizer:
        num_observed = residual.shape[1]
        log_likelihood = log_likelihood - 0.5 * num_observed * jnp.log(2 * jnp.pi * noise_std ** 2)
    return log_likelihood
