"""K invertible blocks of one kind as one module, their parameters stacked on a leading axis.

A flow level of K identical blocks (Glow's ActNorm -> 1x1 conv -> coupling)
holds each parameter once with a leading [K] axis and runs the blocks as one
`lax.scan`: XLA compiles one block body whatever K is, so compile time and
initialization time stop growing with depth (flowjax's `Scan` does the same
for its bijections). The parameters are those of one block with an extra
leading axis, e.g. `params["level_blocks_0"]["blocks"]["actnorm"]["loc"]` is
[K, channels].

One `schedule` chooses how the same parameters run; the values agree:
  * "scan" (default): one `lax.scan` over the blocks;
  * "unrolled": a Python loop over the K slices (an unrolled program that
    compiles in time linear in K; the reference the tests compare against);
  * "reversible": the scan, differentiated by inverting the blocks in the
    backward (autodiff) pass (`jcnf.flows.reversible`), so activation memory
    does not grow with K.

ActNorm's data-dependent initialization still sees the activations that
arrive at each block: `init` runs the same scan, initializing block k on the
output of blocks 0..k-1.

Why not `flax.linen.scan`: the reversible schedule must wrap the whole loop
over the stacked parameters in one custom VJP, which `nn.scan` does not
expose; one hand-written loop serves all three schedules with one parameter
layout.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import Array

from jcnf.flows.reversible import reversible_chain, scan_chain, stack_params

PyTree = Any
STACKED = "blocks"
SCHEDULES = ("scan", "unrolled", "reversible")


def check_schedule(schedule: str) -> None:
    """Raises a ValueError naming `schedule` unless it is one of `SCHEDULES`."""
    if schedule not in SCHEDULES:
        raise ValueError(f"`schedule` must be one of {SCHEDULES}; got {schedule!r}.")


def _slice(stacked: PyTree, index: int) -> PyTree:
    return jax.tree.map(lambda leaf: leaf[index], stacked)


class BlockStack(nn.Module):
    """`length` blocks of `block_type(**block_kwargs)`, parameters stacked under "blocks".

    Each block maps `(x, context, inverse=...)` to `(y, log_det [batch])` and
    has only "params" variables. The forward direction (value -> latent) runs
    blocks 0..K-1; `inverse=True` runs their inverses K-1..0.

    Attributes:
      block_type: the block's Flax module class, e.g. `jcnf.flows.layers.GlowBlock`.
      block_kwargs: its attributes as a tuple of (name, value) pairs (hashable).
      length: the number of blocks K.
      schedule: "scan", "unrolled" or "reversible" (see the module docstring).
    """

    block_type: type
    block_kwargs: tuple[tuple[str, Any], ...] = ()
    length: int = 1
    schedule: str = "scan"

    def _block(self) -> nn.Module:
        # An unbound module: its `apply` is a pure function of the parameters we pass.
        return self.block_type(**dict(self.block_kwargs), parent=None)

    @nn.compact
    def __call__(self, x: Array, context: Array, inverse: bool = False) -> tuple[Array, Array]:
        """Args: x [batch, ...]; context [batch, ...] shared by the blocks. Returns (y, log_det [batch])."""
        check_schedule(self.schedule)
        block = self._block()
        if self.is_initializing() and not self.has_variable("params", STACKED):
            keys = jax.random.split(self.make_rng("params"), self.length)

            def init_one(h: Array, key: Array) -> tuple[Array, PyTree]:
                (y, _), variables = block.init_with_output(key, h, context)
                return y, variables["params"]

            if self.schedule == "unrolled":
                params, h = [], x
                for key in keys:
                    h, block_params = init_one(h, key)
                    params.append(block_params)
                stacked = stack_params(params)
            else:
                _, stacked = jax.lax.scan(init_one, x, keys)
            self.put_variable("params", STACKED, stacked)
        if not self.has_variable("params", STACKED):
            raise ValueError(f"`params` has no stacked '{STACKED}' entry at {'/'.join(self.scope.path)}; "
                             "initialize the model with `model.init(rng, value, context)`.")
        stacked = self.get_variable("params", STACKED)

        def forward(params: PyTree, h: Array, c: Array) -> tuple[Array, Array]:
            return block.apply({"params": params}, h, c, inverse=False)

        def inverse_direction(params: PyTree, h: Array, c: Array) -> tuple[Array, Array]:
            return block.apply({"params": params}, h, c, inverse=True)

        direction, undo = (inverse_direction, forward) if inverse else (forward, inverse_direction)
        if self.schedule == "reversible" and not self.is_initializing():
            return reversible_chain(direction, undo, stacked, x, context, reverse=inverse)
        if self.schedule != "unrolled":
            return scan_chain(direction, stacked, x, context, reverse=inverse)
        log_det = jnp.zeros(x.shape[:1], x.dtype)
        order = reversed(range(self.length)) if inverse else range(self.length)
        for index in order:
            x, block_log_det = direction(_slice(stacked, index), x, context)
            log_det = log_det + block_log_det
        return x, log_det
