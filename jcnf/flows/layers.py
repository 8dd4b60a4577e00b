"""Flax layers that own a bijector's parameters and call its math.

Each layer maps `(x, ..., inverse)` to `(y, log_det)`: forward is value ->
latent; `inverse=True` runs the bijector's inverse with its log-det.
"""

from __future__ import annotations

from typing import Optional

import distrax
import flax.linen as nn
import jax.numpy as jnp
from jax import Array

from jcnf.bijectors.actnorm import ActNorm, actnorm_initial_params
from jcnf.bijectors.conv1x1 import InvConv1x1, random_rotation_lu
from jcnf.bijectors.coupling import coupling_param_size, make_coupling
from jcnf.distributions.normal import log_density_dtype
from jcnf.nets.coupling_nets import ConvCouplingNet, MLPCouplingNet, ResidualMLPCouplingNet

MIXINGS = ("lu", "reverse", "none")
CONDITIONERS = ("mlp", "residual")


def apply_bijector(bijector: distrax.Bijector, x: Array, inverse: bool) -> tuple[Array, Array]:
    """Runs a bijector in the requested direction, returning (output, log_det)."""
    return bijector.inverse_and_log_det(x) if inverse else bijector.forward_and_log_det(x)


class ActNormLayer(nn.Module):
    """ActNorm whose parameters are initialised from the first batch seen in `init`."""

    event_ndims: int = 3

    @nn.compact
    def __call__(self, x: Array, inverse: bool = False) -> tuple[Array, Array]:
        """Maps x (or, with `inverse=True`, its image) and returns (output, log_det [batch])."""
        # The initializers close over x: `model.init` runs forward on the example
        # batch, so they see the activations arriving at this layer.
        loc = self.param("loc", lambda _: actnorm_initial_params(x)[0])
        log_scale = self.param("log_scale", lambda _: actnorm_initial_params(x)[1])
        return apply_bijector(ActNorm(loc, log_scale, self.event_ndims), x, inverse)


class InvConv1x1Layer(nn.Module):
    """LU-parameterized 1x1 convolution, initialised as a random rotation."""

    event_ndims: int = 3

    @nn.compact
    def __call__(self, x: Array, inverse: bool = False) -> tuple[Array, Array]:
        """Maps x (or, with `inverse=True`, its image) and returns (output, log_det [batch])."""
        channels = x.shape[-1]
        key = self.make_rng("params") if self.is_initializing() else None
        # One key for the three factors, so they are the LU of the same rotation.
        # (Flax also calls initializers abstractly in `apply` to check shapes;
        # then any key will do.) In x's dtype: a float32 value must stay float32 when x64 is enabled.
        lower, upper, log_diag = (
            self.param(name, lambda rng, i=i: random_rotation_lu(rng if key is None else key,
                                                                 channels)[i].astype(x.dtype))
            for i, name in enumerate(("lower", "upper", "log_diag")))
        return apply_bijector(InvConv1x1(lower, upper, log_diag, event_ndims=self.event_ndims), x, inverse)


class CouplingLayer(nn.Module):
    """A conditional coupling over the last axis with a conv (images) or MLP (vectors) conditioner.

    Attributes:
      kind: "affine", "additive" or "spline".
      hidden: width of the conditioner.
      swap: transform the first part instead of the second.
      num_bins: spline bins.
      dtype: computation dtype of the conditioner (e.g. jnp.bfloat16); its
        output returns to x's dtype before the coupling's math.
      conditioner: the vector conditioner, "mlp" or "residual" (`ResidualMLPCouplingNet`).
    """

    kind: str = "affine"
    hidden: int = 64
    swap: bool = False
    num_bins: int = 8
    dtype: Optional[jnp.dtype] = None
    conditioner: str = "mlp"

    @nn.compact
    def __call__(self, x: Array, features: Optional[Array], inverse: bool = False) -> tuple[Array, Array]:
        """Maps x (or, with `inverse=True`, its image) and returns (output, log_det [batch])."""
        size = x.shape[-1]
        split_index = size // 2
        transformed = split_index if self.swap else size - split_index
        out = coupling_param_size(self.kind, transformed, self.num_bins)
        if x.ndim == 4:
            net = ConvCouplingNet(out, self.hidden, dtype=self.dtype, name="net")
            event_ndims = 3
        else:
            net_type = ResidualMLPCouplingNet if self.conditioner == "residual" else MLPCouplingNet
            net = net_type(out, self.hidden, dtype=self.dtype, name="net")
            event_ndims = 1
        bijector = make_coupling(self.kind, net, features, split_index, event_ndims, self.swap, self.num_bins)
        return apply_bijector(bijector, x, inverse)


class GlowBlock(nn.Module):
    """ActNorm -> LU 1x1 conv -> conditional coupling; the context enters only the coupling."""

    hidden: int = 512
    coupling: str = "affine"
    num_bins: int = 8
    dtype: Optional[jnp.dtype] = None

    def setup(self):
        """Builds the submodules."""
        self.actnorm = ActNormLayer()
        self.conv = InvConv1x1Layer()
        self.couple = CouplingLayer(self.coupling, self.hidden, num_bins=self.num_bins, dtype=self.dtype)

    def __call__(self, x: Array, features: Array, inverse: bool = False) -> tuple[Array, Array]:
        """Maps x (or, with `inverse=True`, its image) and returns (output, log_det [batch])."""
        if inverse:
            x, ld3 = self.couple(x, features, inverse=True)
            x, ld2 = self.conv(x, inverse=True)
            x, ld1 = self.actnorm(x, inverse=True)
        else:
            x, ld1 = self.actnorm(x)
            x, ld2 = self.conv(x)
            x, ld3 = self.couple(x, features)
        return x, ld1 + ld2 + ld3


class CouplingBlock(nn.Module):
    """An optional ActNorm, a mixing of the entries, then a conditional coupling (vectors).

    Attributes:
      kind: "affine", "additive" or "spline".
      hidden: width of the conditioner.
      swap: transform the first half instead of the second.
      num_bins: spline bins.
      actnorm: an ActNorm before the coupling.
      dtype: computation dtype of the conditioner.
      mixing: "lu" (a learned LU-parameterized linear map, started at a random
        rotation, as Glow's 1x1 convolution), "reverse" (reverse the entries)
        or "none", before the coupling.
      conditioner: "mlp" or "residual".
    """

    kind: str = "affine"
    hidden: int = 64
    swap: bool = False
    num_bins: int = 8
    actnorm: bool = True
    dtype: Optional[jnp.dtype] = None
    mixing: str = "none"
    conditioner: str = "mlp"

    @nn.compact
    def __call__(self, x: Array, context: Array, inverse: bool = False) -> tuple[Array, Array]:
        """Maps x (or, with `inverse=True`, its image) and returns (output, log_det [batch])."""
        if self.mixing not in MIXINGS:
            raise ValueError(f"`mixing` must be one of {list(MIXINGS)}; got {self.mixing!r}.")
        if self.conditioner not in CONDITIONERS:
            raise ValueError(f"`conditioner` must be one of {list(CONDITIONERS)}; got {self.conditioner!r}.")
        norm = ActNormLayer(event_ndims=1, name="actnorm") if self.actnorm else None
        mix = InvConv1x1Layer(event_ndims=1, name="mixing") if self.mixing == "lu" else None
        couple = CouplingLayer(self.kind, self.hidden, swap=self.swap, num_bins=self.num_bins, dtype=self.dtype,
                               conditioner=self.conditioner, name="coupling")
        log_det = jnp.zeros(x.shape[:1], log_density_dtype(x.dtype))
        if not inverse:
            if norm is not None:
                x, log_det = norm(x)
            x, mix_log_det = _mix(mix, self.mixing, x, inverse=False)
            log_det = log_det + mix_log_det
        x, coupling_log_det = couple(x, context, inverse=inverse)
        log_det = log_det + coupling_log_det
        if inverse:
            x, mix_log_det = _mix(mix, self.mixing, x, inverse=True)
            log_det = log_det + mix_log_det
            if norm is not None:
                x, norm_log_det = norm(x, inverse=True)
                log_det = log_det + norm_log_det
        return x, log_det


def _mix(layer: Optional[InvConv1x1Layer], mixing: str, x: Array, inverse: bool) -> tuple[Array, Array]:
    """Applies a CouplingBlock's mixing; the reversal and "none" are volume preserving."""
    if layer is not None:
        return layer(x, inverse=inverse)
    zeros = jnp.zeros(x.shape[:1], x.dtype)
    return (x[..., ::-1], zeros) if mixing == "reverse" else (x, zeros)


class CouplingPair(nn.Module):
    """Two `CouplingBlock`s, transforming the second half and then the first: one scanned RealNVP block.

    With `mixing="reverse"` both transform the second half: the reversal
    before each already alternates which entries that is.
    """

    kind: str = "affine"
    hidden: int = 64
    num_bins: int = 8
    actnorm: bool = True
    dtype: Optional[jnp.dtype] = None
    mixing: str = "none"
    conditioner: str = "mlp"

    @nn.compact
    def __call__(self, x: Array, context: Array, inverse: bool = False) -> tuple[Array, Array]:
        """Maps x (or, with `inverse=True`, its image) and returns (output, log_det [batch])."""
        swaps = (False, False) if self.mixing == "reverse" else (False, True)
        halves = [CouplingBlock(self.kind, self.hidden, swap, self.num_bins, self.actnorm, self.dtype, self.mixing,
                                self.conditioner, name=name)
                  for swap, name in zip(swaps, ("second_half", "first_half"), strict=True)]
        log_det = jnp.zeros(x.shape[:1], log_density_dtype(x.dtype))
        for half in reversed(halves) if inverse else halves:
            x, half_log_det = half(x, context, inverse=inverse)
            log_det = log_det + half_log_det
        return x, log_det


class ShapeMarker(nn.Module):
    """Remembers the value's event shape as a zero-size parameter.

    `sample` is given only a context, yet must know the value's shape. The shape
    is taken from the example passed to `init` and stored as the *shape* of an
    empty array [0, *event_shape]: it costs no memory, travels with the
    parameter tree (checkpoints, preconditioning copies) and is static under jit.
    Kept in the parameters rather than only in a saved model's JSON because
    `model.apply(variables, rng, context, method="sample")` must work on the
    parameters `init` returns, before and without any saving.
    """

    @nn.compact
    def __call__(self, event_shape: Optional[tuple[int, ...]] = None) -> tuple[int, ...]:
        """Records `event_shape` at init; returns the recorded event shape."""
        if event_shape is None:
            if not self.has_variable("params", "value_shape"):
                raise ValueError("initialize the model with `model.init(rng, value, context)` before sampling.")
            return tuple(self.get_variable("params", "value_shape").shape[1:])
        marker = self.param("value_shape", lambda _: jnp.zeros((0,) + tuple(event_shape), jnp.float32))
        return tuple(marker.shape[1:])
