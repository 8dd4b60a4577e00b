"""ConditionalGlow for super-resolution: the flow models the residual from the upsampled context.

value -> value - upsample(context) is a translation that depends only on the
context: a conditional bijection with log|det| = 0. Subtracting an
upsampling of the low-resolution image leaves the flow the high-frequency
detail to model, so a fresh flow starts near a sensible conditional density
instead of having to learn the identity from the context first.

The default upsampling (`skip="backprojected"`) is bicubic with one
back-projection step (`jcnf.nets.backprojected_upsample`): smooth, and every
r x r block still averages to its low-resolution pixel, so for
area-downsampled data the residual keeps zero block means and sampling at
temperature 0 starts at bicubic quality. `skip="nearest"` subtracts the
nearest-neighbour upsampling (the block means themselves). The factorized
baseline `jcnf.baselines.DiscretizedLogisticBaseline(context_skip=True)`
takes the same `skip`, so the two models compare like for like.
"""

from __future__ import annotations

from typing import Optional

from jax import Array

from jcnf import _checks
from jcnf.flows.glow import ConditionalGlow
from jcnf.flows.registry import register
from jcnf.nets.context import SKIPS, upsample_context


@register
class SuperResolutionGlow(ConditionalGlow):
    """A `ConditionalGlow` of value - upsample(context) given the context [B, H/r, W/r, C].

    The context must be an image with the value's channels. All methods and
    attributes are those of `ConditionalGlow`, and:

    Attributes:
      skip: the upsampling subtracted from the value, "backprojected"
        (bicubic, block means corrected) or "nearest".
    """

    skip: str = "backprojected"

    def _check_inputs(self, value: Optional[Array], context: Array) -> None:
        # Runs before any direction is traced (log_prob, inverse, sample, distribution).
        if self.skip not in SKIPS:
            raise ValueError(f"`skip` must be one of {SKIPS}; got {self.skip!r}.")
        super()._check_inputs(value, context)
        channels = (self._marker() if value is None else value.shape[1:])[-1]
        if context.ndim != 4 or context.shape[-1] != channels:
            raise ValueError(f"`context` must be a low-resolution image [batch, height/r, width/r, {channels}] "
                             f"with the value's {channels} channels; got {_checks.describe(context)}.")

    def _forward(self, value: Array, context: Array) -> tuple[Array, Array]:
        return super()._forward(value - upsample_context(context, value.shape, self.skip), context)

    def _inverse(self, z: Array, context: Array) -> tuple[Array, Array]:
        residual, log_det = super()._inverse(z, context)
        return residual + upsample_context(context, z.shape, self.skip), log_det
