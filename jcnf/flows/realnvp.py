"""ConditionalRealNVP: a coupling flow for vectors, conditioned on a context vector."""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp
from jax import Array

from jcnf.distributions.gaussian import ConditionalDiagGaussian, standardizer
from jcnf.distributions.normal import log_density_dtype
from jcnf.flows._vector import check_vector_inputs
from jcnf.flows.base import ConditionalFlow, make_shape_marker
from jcnf.flows.layers import CouplingBlock, CouplingPair
from jcnf.flows.registry import register
from jcnf.flows.stack import BlockStack, check_schedule


@register
class ConditionalRealNVP(ConditionalFlow):
    """p(value | context) for vectors: value [B, D] (D >= 2), context [B, F].

    Blocks alternate which half of the vector is transformed (alternating
    masks over the first and second half), each with an MLP conditioner on
    concat(unchanged half, context); an optional ActNorm and a mixing of the
    entries precede each coupling. Without mixing, each half only ever sees
    the other half as a whole; a learned LU linear map ("lu") or a reversal
    ("reverse") before each coupling lets every entry condition every other.
    With `conditional_base`, the latent's Gaussian has a mean and log-scale
    computed from the context.

    Consecutive blocks are paired (second half, then first half) and the
    blocks // 2 pairs run as one scan over their stacked parameters
    (`params["pairs"]["blocks"]`, leaves [blocks // 2, ...]); an odd last
    block is `params["last"]`.

    Attributes:
      blocks: number of coupling blocks.
      hidden: width of the MLP conditioners.
      coupling: "affine" (default), "additive" or "spline".
      num_bins: spline bins.
      actnorm: an ActNorm before each coupling.
      conditional_base: make the base density depend on the context.
      dtype: computation dtype of the conditioners (e.g. jnp.bfloat16); see
        `ConditionalFlow` for what stays float32.
      mixing: "lu", "reverse" or "none" (see above), before each coupling.
      conditioner: "mlp" (`MLPCouplingNet`) or "residual" (`ResidualMLPCouplingNet`).
      embedding: a Flax module mapping the context [B, ...] to features [B, F'],
        trained jointly with the flow (e.g. `jcnf.nets.DeepSetEmbedding`); None
        feeds the context [B, F] itself.
      check_finite: report non-finite inputs instead of returning NaN.
      schedule: "scan" the pairs (compile time flat in depth), "unrolled", or
        "reversible" (constant-memory gradients); see `jcnf.flows.stack`.
    """

    blocks: int = 8
    hidden: int = 64
    coupling: str = "affine"
    num_bins: int = 8
    actnorm: bool = True
    conditional_base: bool = True
    dtype: Optional[jnp.dtype] = None
    mixing: str = "none"
    conditioner: str = "mlp"
    embedding: Optional[nn.Module] = None
    schedule: str = "scan"

    def setup(self):
        """Builds the submodules."""
        if self.blocks < 1:
            raise ValueError(f"`blocks` must be >= 1; got {self.blocks}.")
        check_schedule(self.schedule)
        self.shape_marker = make_shape_marker()
        kwargs = (("kind", self.coupling), ("hidden", self.hidden), ("num_bins", self.num_bins),
                  ("actnorm", self.actnorm), ("dtype", self.dtype), ("mixing", self.mixing),
                  ("conditioner", self.conditioner))
        self.pairs = (BlockStack(CouplingPair, kwargs, self.blocks // 2, schedule=self.schedule)
                      if self.blocks >= 2 else None)
        self.last = CouplingBlock(**dict(kwargs), swap=False) if self.blocks % 2 else None
        self.base = ConditionalDiagGaussian() if self.conditional_base else None

    def _check_inputs(self, value: Optional[Array], context: Array) -> None:
        check_vector_inputs(value, context, self.embedding, min_dim=2)

    def _trained_context_width(self, params) -> Optional[int]:
        # The first coupling's conditioner reads concat(first half of the value, context).
        # Only a shape is read: the pairs' stacked leading axis does not change a kernel's last two.
        first = params["pairs"]["blocks"]["second_half"] if "pairs" in params else params.get("last")
        kernel = (first or {}).get("coupling", {}).get("net", {}).get("hidden_0", {}).get("kernel")
        if kernel is None or "shape_marker" not in params or self.embedding is not None:
            return None
        dim = params["shape_marker"]["value_shape"].shape[-1]
        return int(kernel.shape[-2]) - dim // 2

    def _features(self, context: Array) -> Array:
        return context if self.embedding is None else self.embedding(context)

    def _forward(self, value: Array, context: Array) -> tuple[Array, Array]:
        context = self._features(context)
        x = value
        log_det = jnp.zeros(value.shape[0], log_density_dtype(value.dtype))
        if self.pairs is not None:
            x, log_det = self.pairs(x, context)
        if self.last is not None:
            x, block_log_det = self.last(x, context)
            log_det += block_log_det
        if self.base is not None:
            mean, log_scale = self.base(context, x.shape[1:], x.shape[0])
            x, base_log_det = standardizer(mean, log_scale, 1).forward_and_log_det(x)
            log_det += base_log_det
        return x, log_det

    def _inverse(self, z: Array, context: Array) -> tuple[Array, Array]:
        context = self._features(context)
        x = z
        log_det = jnp.zeros(z.shape[0], log_density_dtype(z.dtype))
        if self.base is not None:
            mean, log_scale = self.base(context, x.shape[1:], x.shape[0])
            x, log_det = standardizer(mean, log_scale, 1).inverse_and_log_det(x)
        if self.last is not None:
            x, block_log_det = self.last(x, context, inverse=True)
            log_det += block_log_det
        if self.pairs is not None:
            x, block_log_det = self.pairs(x, context, inverse=True)
            log_det += block_log_det
        return x, log_det
