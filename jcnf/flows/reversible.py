"""Constant-memory gradients through stacks of invertible blocks.

Backpropagation through a chain y = f_K(... f_1(x)) normally stores every
intermediate activation of every block, so a training step's memory grows
linearly with depth. A flow's blocks are invertible: the backward pass can
instead start from the chain's output, recover each block's input by inverting
the block, and recompute that one block's local gradient (Gomez et al. 2017,
"The reversible residual network"; InvertibleNetworks.jl does this for flows).
Only the chain's output is kept between the forward and the backward (autodiff) pass, so
activation memory no longer depends on the number of blocks K; the price is
one extra inverse and one extra forward per block in the backward pass.

`scan_chain` runs K blocks of one kind as a `lax.scan` over their stacked
parameters; `reversible_chain` is the same scan with a `jax.custom_vjp`
whose backward pass is the inverting scan. `jcnf.flows.stack.BlockStack`
(the K blocks of a flow level) uses both. Reverse-mode differentiation only:
`jax.jvp` through a memory-efficient chain is not supported.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from jax import Array

PyTree = Any
# block(params, x, context) -> (y, log_det [batch]): one direction of one invertible block.
BlockFn = Callable[[PyTree, Array, Array], tuple[Array, Array]]


def scan_chain(block: BlockFn, stacked_params: PyTree, x: Array, context: Array,
               reverse: bool = False) -> tuple[Array, Array]:
    """Runs K blocks of one kind as one `lax.scan`: y = block(p[K-1], ... block(p[0], x)).

    Args:
      block: block(block_params, x, context) -> (y, log_det), log_det of shape [batch].
      stacked_params: the K blocks' parameters, each leaf [K, ...].
      x: the chain's input, [batch, ...].
      context: conditioning input shared by every block, [batch, ...].
      reverse: apply the blocks in the order K-1..0.

    Returns:
      The chain's output (x's shape) and the summed log-det, shape [batch].
    """
    def body(carry, block_params):
        x, log_det = carry
        y, block_log_det = block(block_params, x, context)
        return (y, log_det + block_log_det), None

    log_det = jnp.zeros(x.shape[:1], x.dtype)
    (y, log_det), _ = jax.lax.scan(body, (x, log_det), stacked_params, reverse=reverse)
    return y, log_det


def reversible_chain(block: BlockFn, block_inverse: BlockFn, stacked_params: PyTree, x: Array,
                     context: Array, reverse: bool = False) -> tuple[Array, Array]:
    """`scan_chain` with an inversion-based, constant-memory gradient.

    The value is that of `scan_chain`; its reverse-mode derivative with
    respect to the parameters, `x` and `context` equals the plain chain's up
    to the rounding error of reconstructing each block's input with
    `block_inverse`.

    Both passes are `lax.scan` loops: a loop body's temporaries die with its
    iteration, which is what bounds the memory. (An unrolled backward pass
    leaves the order to XLA's scheduler; the inverses alone form a chain that
    does not wait for the gradients, and XLA may run them ahead, holding every
    reconstructed input at once.) Between the passes only the parameters (alive
    anyway), the output and the context are kept.

    Args:
      block: block(block_params, x, context) -> (y, log_det), log_det of shape [batch].
      block_inverse: the exact inverse of `block` for the same parameters and
        context: block_inverse(p, block(p, x, c)[0], c)[0] == x.
      stacked_params: the K blocks' parameters, each leaf [K, ...] (see `stack_params`).
      x: the chain's input, [batch, ...].
      context: conditioning input shared by every block, [batch, ...].
      reverse: apply the blocks in the order K-1..0.

    Returns:
      The chain's output (x's shape) and the summed log-det, shape [batch].
    """
    @jax.custom_vjp
    def chain(stacked_params, x, context):
        return scan_chain(block, stacked_params, x, context, reverse)

    def chain_forward(stacked_params, x, context):
        y, log_det = scan_chain(block, stacked_params, x, context, reverse)
        # The output is the only activation kept: every block's input is
        # recovered from it in the backward pass.
        return (y, log_det), (stacked_params, y, context)

    def chain_backward(residuals, cotangents):
        stacked_params, y, context = residuals
        y_bar, log_det_bar = cotangents

        def body(carry, block_params):
            y, y_bar, context_bar = carry
            x, _ = block_inverse(block_params, y, context)
            # Every block's log-det enters the total with weight one, so each
            # block receives the total's cotangent unchanged.
            _, block_vjp = jax.vjp(block, block_params, x, context)
            block_params_bar, x_bar, block_context_bar = block_vjp((y_bar, log_det_bar))
            return (x, x_bar, context_bar + block_context_bar), block_params_bar

        carry = (y, y_bar, jnp.zeros_like(context))
        (_, x_bar, context_bar), params_bar = jax.lax.scan(body, carry, stacked_params, reverse=not reverse)
        return params_bar, x_bar, context_bar

    chain.defvjp(chain_forward, chain_backward)
    return chain(stacked_params, x, context)


def stack_params(params: Sequence[PyTree]) -> PyTree:
    """Stacks per-block parameter pytrees of one structure leaf-wise, each leaf [K, ...].

    Raises:
      ValueError: the blocks' parameters differ in structure or shapes.
    """
    structures = {jax.tree.structure(block_params) for block_params in params}
    shapes = {tuple(jnp.shape(leaf) for leaf in jax.tree.leaves(block_params)) for block_params in params}
    if len(structures) != 1 or len(shapes) != 1:
        raise ValueError("stacked blocks must be of one kind: every block's parameters must have the "
                         f"same structure and shapes; got {len(shapes)} different shape sets.")
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *params)
