"""Constant-memory gradients through stacks of invertible steps.

Backpropagation through a chain y = f_K(... f_1(x)) normally stores every
intermediate activation of every step, so a training step's memory grows
linearly with depth. A flow's steps are invertible: the backward pass can
instead start from the chain's output, recover each step's input by inverting
the step, and recompute that one step's local gradient (Gomez et al. 2017,
"The reversible residual network"; InvertibleNetworks.jl does this for flows).
Only the chain's output is kept between the forward and the backward pass, so
activation memory no longer depends on the number of steps K; the price is
one extra inverse and one extra forward per step in the backward pass.

`reversible_chain` is the pure-function core (a `jax.custom_vjp` over a
`lax.scan` of steps of one kind);
`run_steps` applies it to a list of bound Flax step modules, which is how
`ConditionalGlow(memory_efficient=True)` uses it. Reverse-mode differentiation
only: `jax.jvp` through a memory-efficient chain is not supported.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import Array

PyTree = Any
# step(params, x, context) -> (y, log_det [batch]): one direction of one invertible step.
StepFn = Callable[[PyTree, Array, Array], tuple[Array, Array]]


def _scan_chain(step: StepFn, stacked_params: PyTree, x: Array, context: Array) -> tuple[Array, Array]:
    def body(carry, step_params):
        x, log_det = carry
        y, step_log_det = step(step_params, x, context)
        return (y, log_det + step_log_det), None

    log_det = jnp.zeros(x.shape[:1], x.dtype)
    (y, log_det), _ = jax.lax.scan(body, (x, log_det), stacked_params)
    return y, log_det


def reversible_chain(step: StepFn, step_inverse: StepFn, params: Sequence[PyTree], x: Array,
                     context: Array) -> tuple[Array, Array]:
    """Runs K steps of one kind with an inversion-based, constant-memory gradient.

    Step k maps x -> step(params[k], x, context). The value is that of the
    plain loop; its reverse-mode derivative with respect to `params`, `x` and
    `context` equals the plain loop's up to the rounding error of
    reconstructing each step's input with `step_inverse`.

    Both passes are `lax.scan` loops over the steps' stacked parameters: a
    loop body's temporaries die with its iteration, which is what bounds the
    memory. (An unrolled backward pass leaves the order to XLA's scheduler;
    the inverses alone form a chain that does not wait for the gradients, and
    on CPU XLA ran them ahead, holding every reconstructed input at once.)
    The price is two parameter-sized working buffers while the chain's
    backward pass runs: the stacked parameters and their stacked gradients.

    Args:
      step: step(step_params, x, context) -> (y, log_det), log_det of shape [batch].
      step_inverse: the exact inverse of `step` for the same parameters and
        context: step_inverse(p, step(p, x, c)[0], c)[0] == x.
      params: K parameter pytrees of one structure and shape, in step order.
      x: the chain's input, [batch, ...].
      context: conditioning input shared by every step, [batch, ...].

    Returns:
      The chain's output (x's shape) and the summed log-det, shape [batch].
    """
    params = tuple(params)  # mixed steps fail in stack_params, with a clear message, when first traced

    @jax.custom_vjp
    def chain(params, x, context):
        return _scan_chain(step, stack_params(params), x, context)

    def chain_forward(params, x, context):
        y, log_det = _scan_chain(step, stack_params(params), x, context)
        # The output is the only activation kept: every step's input is
        # recovered from it in the backward pass. The per-step parameters are
        # kept unstacked (they are alive anyway) and stacked again when
        # needed, so no stacked copy lives from the forward to the backward.
        return (y, log_det), (params, y, context)

    def chain_backward(residuals, cotangents):
        params, y, context = residuals
        y_bar, log_det_bar = cotangents

        def body(carry, step_params):
            y, y_bar, context_bar = carry
            x, _ = step_inverse(step_params, y, context)
            # Every step's log-det enters the total with weight one, so each
            # step receives the total's cotangent unchanged.
            _, step_vjp = jax.vjp(step, step_params, x, context)
            step_params_bar, x_bar, step_context_bar = step_vjp((y_bar, log_det_bar))
            return (x, x_bar, context_bar + step_context_bar), step_params_bar

        carry = (y, y_bar, jnp.zeros_like(context))
        (_, x_bar, context_bar), stacked_bar = jax.lax.scan(body, carry, stack_params(params), reverse=True)
        params_bar = tuple(jax.tree.map(lambda leaf, k=k: leaf[k], stacked_bar) for k in range(len(params)))
        return params_bar, x_bar, context_bar

    chain.defvjp(chain_forward, chain_backward)
    return chain(params, x, context)


def _check_one_kind(params: Sequence[PyTree]) -> None:
    """Raises ValueError unless every step's parameters have one structure and one set of shapes."""
    structures = {jax.tree.structure(step_params) for step_params in params}
    shapes = {tuple(jnp.shape(leaf) for leaf in jax.tree.leaves(step_params)) for step_params in params}
    if len(structures) != 1 or len(shapes) != 1:
        raise ValueError("a reversible chain needs steps of one kind: every step's parameters must have the "
                         f"same structure and shapes; got {len(shapes)} different shape sets.")


def stack_params(params: Sequence[PyTree]) -> PyTree:
    """Stacks per-step parameter pytrees of one structure leaf-wise, each leaf [K, ...]."""
    _check_one_kind(params)
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *params)


def run_steps(steps: Sequence[nn.Module], x: Array, context: Array, inverse: bool = False,
              memory_efficient: bool = False) -> tuple[Array, Array]:
    """Applies bound Flax step modules in sequence, optionally with a constant-memory gradient.

    Each module maps `(x, context, inverse=...)` to `(y, log_det)` (as
    `jcnf.flows.layers.GlowStep` does). Forward runs the steps in order;
    `inverse=True` runs their inverses in reverse order. Both directions can
    use the memory-efficient gradient, since the inverse chain's own inverse is
    the forward chain: training by likelihood and by reverse KL both benefit.

    Args:
      steps: bound submodules of the calling module, in forward order, all of
        one kind (same attributes and parameter shapes).
      x: input, [batch, ...].
      context: conditioning features shared by the steps, [batch, ...].
      inverse: run the inverse chain.
      memory_efficient: use `reversible_chain`. It needs the steps' parameters
        to exist, so the caller must take the plain path while initializing.

    Returns:
      The output (x's shape) and the summed log-det, shape [batch].
    """
    ordered = list(reversed(steps)) if inverse else list(steps)
    if not memory_efficient:
        log_det = jnp.zeros(x.shape[:1], x.dtype)
        for step in ordered:
            x, step_log_det = step(x, context, inverse=inverse)
            log_det = log_det + step_log_det
        return x, log_det

    unbound = [step.unbind() for step in ordered]
    # All steps share the first one's definition; only their parameters differ.
    module, variables = unbound[0]
    if any(other_module.clone(name=None) != module.clone(name=None) for other_module, _ in unbound[1:]):
        raise ValueError("memory-efficient steps must all have the same attributes.")
    # Only the parameters are differentiated; any other collection is taken
    # from the first step and closed over as a constant.
    constants = {name: value for name, value in variables.items() if name != "params"}

    def direction(step_inverse: bool) -> StepFn:
        def step_fn(params: PyTree, value: Array, step_context: Array) -> tuple[Array, Array]:
            return module.apply({**constants, "params": params}, value, step_context, inverse=step_inverse)
        return step_fn

    params = [step_variables["params"] for _, step_variables in unbound]
    return reversible_chain(direction(inverse), direction(not inverse), params, x, context)
