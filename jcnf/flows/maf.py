"""ConditionalMAF: a masked autoregressive flow for vectors, conditioned on a context.

Each block is a conditional masked autoregressive transform (a MADE
conditioner on the value and the context, an affine or rational-quadratic
spline transformer) followed by a reversal of the vector, so consecutive
blocks condition in opposite orders. The blocks are identical in structure
and run as one `lax.scan` over parameters stacked on a leading axis
(`params["stack"]["blocks"]`, leaves [blocks, ...]), so compile time stays
flat in depth.

Density evaluation (value -> latent) is one MADE pass per block; sampling
(latent -> value) is D passes per block (`jcnf.bijectors.autoregressive`).
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
from jax import Array

from jcnf.bijectors.autoregressive import (
                                           ConditionalMaskedAutoregressive,
                                           transformer_param_size,
)
from jcnf.flows._vector import check_vector_inputs
from jcnf.flows.base import ConditionalFlow, make_shape_marker
from jcnf.flows.registry import register
from jcnf.flows.stack import BlockStack, check_schedule
from jcnf.nets.made import MADE


class MaskedAutoregressiveBlock(nn.Module):
    """A conditional masked autoregressive transform, then a reversal of the vector.

    Attributes:
      transformer: "affine" or "spline".
      hidden: width of the MADE.
      depth: hidden layers of the MADE.
      num_bins: spline bins.
      bound: the spline's interval [-bound, bound] (in standardized units).
    """

    transformer: str = "affine"
    hidden: int = 64
    depth: int = 2
    num_bins: int = 8
    bound: float = 4.0

    @nn.compact
    def __call__(self, x: Array, context: Array, inverse: bool = False) -> tuple[Array, Array]:
        """Maps x (or, with `inverse=True`, its image) and returns (output, log_det [batch])."""
        made = MADE(transformer_param_size(self.transformer, self.num_bins), self.hidden, self.depth, name="made")
        bijector = ConditionalMaskedAutoregressive(made, context, self.transformer, self.num_bins, self.bound)
        # The reversal is volume preserving; it is undone first on the way back.
        if inverse:
            return bijector.inverse_and_log_det(x[..., ::-1])
        z, log_det = bijector.forward_and_log_det(x)
        return z[..., ::-1], log_det


@register
class ConditionalMAF(ConditionalFlow):
    """p(value | context) for vectors: value [B, D] (D >= 1), context [B, F] (or an embedding's input).

    Attributes:
      blocks: number of autoregressive blocks.
      hidden: width of the MADE conditioners.
      depth: hidden layers per MADE.
      transformer: "affine" (MAF) or "spline" (a neural spline autoregressive flow).
      num_bins: spline bins.
      bound: the spline's interval [-bound, bound]; identity outside.
      embedding: a Flax module mapping the context [B, ...] to features [B, F'],
        trained jointly with the flow (e.g. `jcnf.nets.DeepSetEmbedding`); None
        feeds the context [B, F] itself.
      check_finite: report non-finite inputs instead of returning NaN.
      schedule: "scan" the blocks (compile time flat in depth), "unrolled", or
        "reversible" (constant-memory gradients); see `jcnf.flows.stack`.
    """

    blocks: int = 5
    hidden: int = 64
    depth: int = 2
    transformer: str = "affine"
    num_bins: int = 8
    bound: float = 4.0
    embedding: Optional[nn.Module] = None
    schedule: str = "scan"

    def setup(self):
        """Builds the submodules."""
        if self.blocks < 1:
            raise ValueError(f"`blocks` must be >= 1; got {self.blocks}.")
        transformer_param_size(self.transformer, self.num_bins)
        check_schedule(self.schedule)
        self.shape_marker = make_shape_marker()
        kwargs = (("transformer", self.transformer), ("hidden", self.hidden), ("depth", self.depth),
                  ("num_bins", self.num_bins), ("bound", self.bound))
        self.stack = BlockStack(MaskedAutoregressiveBlock, kwargs, self.blocks, schedule=self.schedule)

    def _check_inputs(self, value: Optional[Array], context: Array) -> None:
        check_vector_inputs(value, context, self.embedding)

    def _trained_context_width(self, params) -> Optional[int]:
        # The MADE's context kernel is [F, hidden] (with the stacked leading axis in front).
        kernel = params.get("stack", {}).get("blocks", {}).get("made", {}).get("context", {}).get("kernel")
        if kernel is None or self.embedding is not None:
            return None
        return int(kernel.shape[-2])

    def _features(self, context: Array) -> Array:
        return context if self.embedding is None else self.embedding(context)

    def _forward(self, value: Array, context: Array) -> tuple[Array, Array]:
        return self.stack(value, self._features(context))

    def _inverse(self, z: Array, context: Array) -> tuple[Array, Array]:
        return self.stack(z, self._features(context), inverse=True)
