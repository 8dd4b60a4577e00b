"""ConditionalGlow: a multi-scale Glow for images, conditioned on a context.

Each of the L levels is squeeze(2x2) -> K blocks of (ActNorm, LU 1x1 conv,
conditional coupling) -> split; the factored-out half is standardized by a split prior
p(z_out | z_kept, h_l) and the last level by the top prior p(z | h_L). The
context encoder gives one feature map h_l per level (Winkler et al. 2019).
"""

from __future__ import annotations

from typing import Optional

import jax.numpy as jnp
from jax import Array

from jcnf import _checks
from jcnf.bijectors.squeeze import squeeze2x2, unsqueeze2x2
from jcnf.distributions.gaussian import ConditionalDiagGaussian, SplitPrior, standardizer
from jcnf.distributions.normal import log_density_dtype
from jcnf.flows.base import ConditionalFlow, make_shape_marker
from jcnf.flows.layers import GlowBlock
from jcnf.flows.registry import register
from jcnf.flows.stack import BlockStack, check_schedule
from jcnf.nets.rrdb import make_encoder


def _standardize(z: Array, mean: Array, log_scale: Array) -> tuple[Array, Array]:
    return standardizer(mean, log_scale, 3).forward_and_log_det(z)


def _unstandardize(eps: Array, mean: Array, log_scale: Array) -> tuple[Array, Array]:
    return standardizer(mean, log_scale, 3).inverse_and_log_det(eps)


@register
class ConditionalGlow(ConditionalFlow):
    """p(value | context) for images, value [B, H, W, C] float (NHWC).

    The context is an image at the value's resolution [B, H, W, c], at that
    resolution divided by an integer factor [B, H/r, W/r, c], or a vector [B, d].

    Attributes:
      levels: number of levels L; H and W must be divisible by 2^L.
      blocks: flow blocks K per level (Glow's "steps of flow").
      hidden: width of the coupling networks.
      coupling: "affine" (default), "additive" or "spline".
      num_bins: spline bins when coupling="spline".
      context_features: channels of the encoder's feature maps.
      encoder_blocks: blocks of the context encoder.
      encoder: the context encoder, "residual" (`jcnf.nets.ContextEncoder`,
        plain residual blocks) or "rrdb" (`jcnf.nets.RRDBEncoder`, the
        residual-in-residual dense blocks of Winkler et al.; their setting is
        context_features=128, encoder_blocks=16). Its parameters live under
        "encoder" either way.
      full_resolution_context: give the first level the encoder's
        full-resolution features too, space-to-depth (`ContextEncoder`'s
        `full_resolution`), so each pixel is conditioned on its own features.
      dtype: computation dtype of the networks (e.g. jnp.bfloat16); the flow's
        bijective math, parameters, log-dets and log-densities stay float32
        (`ConditionalFlow`'s precision policy).
      check_finite: report non-finite inputs instead of returning NaN.
      schedule: how each level's K blocks run over their stacked parameters:
        "scan" (default; one `lax.scan`, compile and init time flat in K),
        "unrolled" (a Python loop, compile time linear in K) or "reversible"
        (the scan, differentiated by inverting the blocks in the backward
        pass instead of storing their activations, `jcnf.flows.reversible`:
        activation memory stops growing with K, at the cost of one extra
        forward and inverse per block). Same values and parameters for all
        three; the gradients agree to float32 rounding.
    """

    levels: int = 3
    blocks: int = 8
    hidden: int = 512
    coupling: str = "affine"
    num_bins: int = 8
    context_features: int = 64
    encoder_blocks: int = 2
    encoder: str = "residual"
    full_resolution_context: bool = False
    dtype: Optional[jnp.dtype] = None
    schedule: str = "scan"

    def setup(self):
        """Builds the submodules."""
        if self.levels < 1 or self.blocks < 1:
            raise ValueError(f"`levels` and `blocks` must be >= 1; got levels={self.levels}, blocks={self.blocks}.")
        check_schedule(self.schedule)
        self.shape_marker = make_shape_marker()
        # `encoder` names the choice, so the module takes another attribute and keeps the parameter name.
        extra = {"full_resolution": True} if self.full_resolution_context else {}
        self.context_encoder = make_encoder(self.encoder, self.context_features, self.encoder_blocks,
                                            dtype=self.dtype, name="encoder", **extra)
        block_kwargs = (("hidden", self.hidden), ("coupling", self.coupling), ("num_bins", self.num_bins),
                        ("dtype", self.dtype))
        # One module per level owns its K blocks' parameters stacked on a leading axis.
        self.level_blocks = [BlockStack(GlowBlock, block_kwargs, self.blocks, schedule=self.schedule)
                             for _ in range(self.levels)]
        self.split_priors = [SplitPrior() for _ in range(self.levels - 1)]
        self.top_prior = ConditionalDiagGaussian()

    def _check_inputs(self, value: Optional[Array], context: Array) -> None:
        _checks.check_float_array("context", context, "[batch, height/r, width/r, channels] or [batch, features]",
                                  (2, 4))
        if value is None:
            value_spatial = self._marker()[:2]
        else:
            _checks.check_float_array("value", value, "[batch, height, width, channels]", (4,))
            _checks.check_same_batch("value", value, "context", context)
            value_spatial = value.shape[1:3]
            divisor = 2 ** self.levels
            if value_spatial[0] % divisor or value_spatial[1] % divisor:
                raise ValueError(f"`value` height and width must be divisible by 2^levels = {divisor}; "
                                 f"got {_checks.describe(value)}.")
        if context.ndim == 4:
            height, width = value_spatial
            ch, cw = context.shape[1:3]
            if height % ch or width % cw or height // ch != width // cw:
                raise ValueError(
                    f"`context` image must be the value's resolution {height}x{width} divided by one integer "
                    f"factor; got {_checks.describe(context)}.")

    def _trained_context_width(self, params) -> Optional[int]:
        # The encoder's stem (a convolution, or a dense layer for a vector) reads the context's last axis.
        kernel = params.get("encoder", {}).get("stem", {}).get("kernel")
        return None if kernel is None else int(kernel.shape[-2])

    def _check_event_shape(self, trained: tuple[int, ...], event_shape: tuple[int, ...]) -> None:
        # Convolutions, squeezes and 1x1 convs fix only the channels and the
        # divisibility of the spatial size.
        divisor = 2 ** self.levels
        if (len(event_shape) != 3 or event_shape[-1] != trained[-1]
                or event_shape[0] % divisor or event_shape[1] % divisor):
            raise ValueError(f"`event_shape` must be (height, width, {trained[-1]}) with height and width divisible "
                             f"by 2^levels = {divisor} (trained on {trained}); got {event_shape}.")

    def _features(self, context: Array, event_shape: tuple[int, ...]) -> list[Array]:
        # The priors' heads run in float32 on the encoder's (possibly bfloat16) features: their
        # log-scales enter the log-density directly.
        return [features.astype(log_density_dtype(features.dtype))
                for features in self.context_encoder(context, tuple(event_shape[:2]), self.levels)]

    def _run_level(self, level: int, x: Array, features: Array, inverse: bool) -> tuple[Array, Array]:
        return self.level_blocks[level](x, features, inverse=inverse)

    def _forward(self, value: Array, context: Array) -> tuple[Array, Array]:
        features = self._features(context, value.shape[1:])
        x = value
        log_det = jnp.zeros(value.shape[0], log_density_dtype(value.dtype))
        factored = []
        for level in range(self.levels):
            x = squeeze2x2(x)
            x, blocks_log_det = self._run_level(level, x, features[level], inverse=False)
            log_det += blocks_log_det
            if level < self.levels - 1:
                kept, out = jnp.split(x, 2, axis=-1)
                eps, prior_log_det = _standardize(out, *self.split_priors[level](kept, features[level]))
                factored.append(eps)
                x = kept
            else:
                mean, log_scale = self.top_prior(features[level], x.shape[1:], x.shape[0])
                x, prior_log_det = _standardize(x, mean, log_scale)
            log_det += prior_log_det
        # Reassemble the latents in the value's layout: concatenating each level's
        # factored half back and undoing its squeeze mirrors the decomposition.
        z = unsqueeze2x2(x)
        for eps in reversed(factored):
            z = unsqueeze2x2(jnp.concatenate([z, eps], axis=-1))
        return z, log_det

    def _inverse(self, z: Array, context: Array) -> tuple[Array, Array]:
        features = self._features(context, z.shape[1:])
        factored = []
        for _ in range(self.levels - 1):
            z = squeeze2x2(z)
            z, eps = jnp.split(z, 2, axis=-1)
            factored.append(eps)
        z = squeeze2x2(z)
        mean, log_scale = self.top_prior(features[-1], z.shape[1:], z.shape[0])
        x, log_det = _unstandardize(z, mean, log_scale)
        for level in reversed(range(self.levels)):
            if level < self.levels - 1:
                out, prior_log_det = _unstandardize(factored[level],
                                                    *self.split_priors[level](x, features[level]))
                x = jnp.concatenate([x, out], axis=-1)
                log_det += prior_log_det
            x, blocks_log_det = self._run_level(level, x, features[level], inverse=True)
            log_det += blocks_log_det
            x = unsqueeze2x2(x)
        return x, log_det
