"""K invertible steps of one kind as one module, their parameters stacked on a leading axis.

A flow level of K identical steps (Glow's ActNorm -> 1x1 conv -> coupling)
holds each parameter once with a leading [K] axis and runs the steps as one
`lax.scan`: XLA compiles one step body whatever K is, so compile time and
initialization time stop growing with depth (flowjax's `Scan` does the same
for its bijections). The parameters are those of one step with an extra
leading axis, e.g. `params["level_steps_0"]["steps"]["actnorm"]["loc"]` is
[K, channels].

Three ways of running the same parameters give the same values:
  * `scan=True` (default): one `lax.scan` over the steps;
  * `scan=False`: a Python loop over the K slices (an unrolled program that
    compiles in time linear in K; the reference the tests compare against);
  * `memory_efficient=True`: the scan, differentiated by inverting the steps
    in the backward pass (`jcnf.flows.reversible`), so activation memory
    does not grow with K.

ActNorm's data-dependent initialization still sees the activations that
arrive at each step: `init` runs the same scan, initializing step k on the
output of steps 0..k-1.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import Array

from jcnf.distributions.normal import log_density_dtype
from jcnf.flows.reversible import reversible_chain, scan_chain, stack_params

PyTree = Any
STACKED = "steps"


def _slice(stacked: PyTree, index: int) -> PyTree:
    return jax.tree.map(lambda leaf: leaf[index], stacked)


class StepStack(nn.Module):
    """`length` steps of `step_type(**step_kwargs)`, parameters stacked under "steps".

    Each step maps `(x, context, inverse=...)` to `(y, log_det [batch])` and
    has only "params" variables. Forward runs steps 0..K-1; `inverse=True`
    runs their inverses K-1..0.

    Attributes:
      step_type: the step's Flax module class, e.g. `jcnf.flows.layers.GlowStep`.
      step_kwargs: its attributes as a tuple of (name, value) pairs (hashable).
      length: the number of steps K.
      scan: run the steps as one `lax.scan` (otherwise a Python loop).
      memory_efficient: invert the steps in the backward pass instead of
        storing their activations.
    """

    step_type: type
    step_kwargs: tuple[tuple[str, Any], ...] = ()
    length: int = 1
    scan: bool = True
    memory_efficient: bool = False

    def _step(self) -> nn.Module:
        # An unbound module: its `apply` is a pure function of the parameters we pass.
        return self.step_type(**dict(self.step_kwargs), parent=None)

    @nn.compact
    def __call__(self, x: Array, context: Array, inverse: bool = False) -> tuple[Array, Array]:
        """Args: x [batch, ...]; context [batch, ...] shared by the steps. Returns (y, log_det [batch])."""
        step = self._step()
        if self.is_initializing() and not self.has_variable("params", STACKED):
            keys = jax.random.split(self.make_rng("params"), self.length)

            def init_one(h: Array, key: Array) -> tuple[Array, PyTree]:
                (y, _), variables = step.init_with_output(key, h, context)
                return y, variables["params"]

            if self.scan:
                _, stacked = jax.lax.scan(init_one, x, keys)
            else:
                params, h = [], x
                for key in keys:
                    h, step_params = init_one(h, key)
                    params.append(step_params)
                stacked = stack_params(params)
            self.put_variable("params", STACKED, stacked)
        if not self.has_variable("params", STACKED):
            raise ValueError(f"`params` has no stacked '{STACKED}' entry at {'/'.join(self.scope.path)}: "
                             "parameters from before steps were stacked cannot be used; retrain or convert them.")
        stacked = self.get_variable("params", STACKED)

        def forward(params: PyTree, h: Array, c: Array) -> tuple[Array, Array]:
            return step.apply({"params": params}, h, c, inverse=False)

        def backward(params: PyTree, h: Array, c: Array) -> tuple[Array, Array]:
            return step.apply({"params": params}, h, c, inverse=True)

        direction, undo = (backward, forward) if inverse else (forward, backward)
        if self.memory_efficient and not self.is_initializing():
            return reversible_chain(direction, undo, stacked, x, context, reverse=inverse)
        if self.scan:
            return scan_chain(direction, stacked, x, context, reverse=inverse)
        log_det = jnp.zeros(x.shape[:1], log_density_dtype(x.dtype))
        order = reversed(range(self.length)) if inverse else range(self.length)
        for index in order:
            x, step_log_det = direction(_slice(stacked, index), x, context)
            log_det = log_det + step_log_det
        return x, log_det
