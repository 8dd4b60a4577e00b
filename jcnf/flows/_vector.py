"""Input checks shared by the vector flows (value [B, D], context [B, F] or an embedding's input)."""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
from jax import Array

from jcnf import _checks
from jcnf.flows.registry import register
from jcnf.nets.embedding import CNNEmbedding, DeepSetEmbedding, MLPEmbedding

# A saved vector flow names its embedding network: the embeddings are registered here, where the flows
# that take them live (jcnf.nets sits below the registry).
for _embedding in (MLPEmbedding, DeepSetEmbedding, CNNEmbedding):
    register(_embedding)


def check_vector_inputs(value: Optional[Array], context: Array, embedding: Optional[nn.Module],
                        min_dim: int = 1) -> None:
    """Raises a ValueError naming the argument for a value or context a vector flow cannot take.

    Args:
      value: [batch, dim] with dim >= min_dim, or None when only the context is given.
      context: [batch, context_features]; with an embedding, any floating
        array with a leading batch axis (the embedding checks the rest).
      embedding: the flow's embedding network, or None.
      min_dim: the smallest dim the flow supports.
    """
    if embedding is None:
        _checks.check_float_array("context", context, "[batch, context_features]", (2,))
    else:
        _checks.check_float_array("context", context, "[batch, ...] (the embedding's input)", range(1, 8))
    if value is not None:
        expected = f"[batch, dim] with dim >= {min_dim}"
        _checks.check_float_array("value", value, expected, (2,))
        if value.shape[1] < min_dim:
            raise ValueError(f"`value` must have shape {expected}; got {_checks.describe(value)}.")
        _checks.check_same_batch("value", value, "context", context)
