"""ConditionalGlow for super-resolution: the flow models the residual from the upsampled context.

value -> value - upsample(context) is a translation that depends only on the
context: a conditional bijection with log|det| = 0. Subtracting the
nearest-neighbour upsampling of the low-resolution image (the block means,
for area downsampling) leaves the flow the high-frequency detail to model,
so a fresh flow starts near a sensible conditional density instead of
having to learn the identity from the context first. The factorized baseline
`jcnf.baselines.DiscretizedLogisticBaseline(context_skip=True)` gets the
same skip, so the two models compare like for like.
"""

from __future__ import annotations

from typing import Optional

from jax import Array

from jcnf import _checks
from jcnf.flows.glow import ConditionalGlow
from jcnf.nets.context import resize_context


class SuperResolutionGlow(ConditionalGlow):
    """A `ConditionalGlow` of value - upsample(context) given the context [B, H/r, W/r, C].

    The context must be an image with the value's channels. All methods and
    attributes are those of `ConditionalGlow`.
    """

    def _check_inputs(self, value: Optional[Array], context: Array) -> None:
        # Runs before any direction is traced (log_prob, inverse, sample, distribution).
        super()._check_inputs(value, context)
        channels = (self._marker() if value is None else value.shape[1:])[-1]
        if context.ndim != 4 or context.shape[-1] != channels:
            raise ValueError(f"`context` must be a low-resolution image [batch, height/r, width/r, {channels}] "
                             f"with the value's {channels} channels; got {_checks.describe(context)}.")

    def _forward(self, value: Array, context: Array) -> tuple[Array, Array]:
        return super()._forward(value - resize_context(context, value.shape), context)

    def _inverse(self, z: Array, context: Array) -> tuple[Array, Array]:
        residual, log_det = super()._inverse(z, context)
        return residual + resize_context(context, z.shape), log_det
