"""The properties every bijector, flow, dequantizer and baseline shares, over `_registry.REGISTRY`.

Autodiff in every mode: reverse (grad, jacrev), forward (jvp, jacfwd,
linearize) with respect to the value, the context and the parameters, and
second order (hessian, forward over reverse).

Each test runs over the entries the property applies to; `_registry` says
why it does not apply to the others. Each test compiles one function per
entry that computes all it compares.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _registry import entries
from absl.testing import parameterized
from conftest import brute_force_log_det
from jax.flatten_util import ravel_pytree

from jcnf.distributions import standard_normal_log_prob


def _ids(prop):
    return pytest.mark.parametrize("entry", entries(prop), ids=lambda entry: entry.name)


def _max_change(a, b):
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


@_ids("round_trip")
def test_inverse_undoes_forward(entry):
    case = entry.case

    @jax.jit
    def round_trip(value, context):
        output, log_det = case.forward(value, context)
        back, inverse_log_det = case.inverse(output, context)
        return output, log_det, back, inverse_log_det

    output, log_det, back, inverse_log_det = round_trip(case.value, case.context)
    chex.assert_equal_shape([back, case.value])
    chex.assert_shape([log_det, inverse_log_det], (case.value.shape[0],))
    chex.assert_equal_size([output, case.value])
    chex.assert_trees_all_close(back, case.value, atol=case.round_trip_atol, rtol=0)
    chex.assert_trees_all_close(inverse_log_det, -log_det, atol=case.log_det_atol, rtol=0)


@_ids("log_det")
def test_log_det_matches_brute_force_jacobian(entry):
    case = entry.case
    context = jax.tree.map(lambda leaf: leaf[:1], case.context)

    @jax.jit
    def log_dets(value):
        def row(v):
            return case.forward(v[None], context)[0][0]
        return case.forward(value[:1], context)[1][0], brute_force_log_det(row, value[0])

    log_det, expected = log_dets(case.value)
    chex.assert_trees_all_close(log_det, expected, atol=case.log_det_atol, rtol=1e-5)


@_ids("grad")
def test_gradients_are_finite(entry):
    case = entry.case

    @jax.jit
    def grads(value, context):
        def total(value, context):
            output, log_det = case.forward(value, context)
            return jnp.sum(output) + (0.0 if log_det is None else jnp.sum(log_det))
        return jax.grad(total, argnums=(0, 1))(value, context)

    value_and_context_grads = grads(case.value, case.context)
    chex.assert_tree_all_finite(value_and_context_grads)
    # Not all zero: the output depends on the inputs (the baselines' discrete values only through the context).
    assert max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree.leaves(value_and_context_grads)) > 0


@_ids("context")
def test_context_changes_the_output(entry):
    case = entry.case
    forward = jax.jit(case.forward)
    # Perturbed parameters of scale >= 0.05 move the output by far more than float32 rounding.
    assert _max_change(forward(case.value, case.context), forward(case.value, case.other_context)) > 1e-5


@_ids("bad_input")
def test_bad_input_raises_value_error_naming_the_argument(entry):
    case = entry.case
    with pytest.raises(ValueError, match=case.bad_match):
        case.bad_input()


class JitEagerVmapTest(chex.TestCase):
    """The same outputs eagerly, under jit, and row by row under vmap."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*[(entry.name, entry) for entry in entries("vmap")])
    def test_batched_and_row_by_row_agree(self, entry):
        case = entry.case
        context_axis = None if case.context is None else 0

        def both(value, context):
            def one_row(v, c):
                return case.forward(v[None], jax.tree.map(lambda leaf: leaf[None], c))
            rows = jax.vmap(one_row, in_axes=(0, context_axis))(value, context)
            return case.forward(value, context), jax.tree.map(lambda leaf: leaf[:, 0], rows)

        batched, rows = self.variant(both)(case.value, case.context)
        chex.assert_trees_all_close(rows, batched, atol=1e-5, rtol=1e-5)
        chex.assert_trees_all_close(batched, _eager(entry), atol=1e-5, rtol=1e-5)


_EAGER = {}


def _eager(entry):
    """The entry's eager output, computed once and shared by the variants."""
    if entry.name not in _EAGER:
        _EAGER[entry.name] = entry.case.forward(entry.case.value, entry.case.context)
    return _EAGER[entry.name]


def test_registry_covers_every_property_with_a_reason_for_each_gap():
    from _registry import PROPERTIES, REGISTRY
    assert len({entry.name for entry in REGISTRY}) == len(REGISTRY)
    for entry in REGISTRY:
        assert set(entry.not_applicable) <= set(PROPERTIES), entry.name
        assert all(isinstance(reason, str) and reason for reason in entry.not_applicable.values()), entry.name
    assert np.all([len(entries(prop)) >= 4 for prop in PROPERTIES])
    # One test checks forward mode, linearize and the Hessian together, so all must apply to the same entries.
    assert entries("linearize") == entries("hessian") == entries("forward_mode")


# Forward mode ------------------------------------------------------------------
# Each entry is differentiated at one row (batch 1), so every Jacobian below is
# at most a few hundred entries and each test compiles one small program.


def _one_row(case):
    return case.value[:1], jax.tree.map(lambda leaf: leaf[:1], case.context)


def _flat(fn, example):
    """The map `fn` of the flattened `example` to its flattened outputs, and the flattened example."""
    flat, unravel = ravel_pytree(example)
    return (lambda x: ravel_pytree(fn(unravel(x)))[0]), flat


def _forward_and_reverse(fn, x, tangent):
    """Jacobians of `fn` at `x` by jacfwd and jacrev; J @ tangent by jvp, by linearize and from the jacrev Jacobian."""
    forward, reverse = jax.jacfwd(fn)(x), jax.jacrev(fn)(x)
    return forward, reverse, jax.jvp(fn, (x,), (tangent,))[1], reverse @ tangent


def _assert_forward_matches_reverse(derivatives):
    forward, reverse, jvp, reverse_times_tangent = derivatives
    chex.assert_tree_all_finite(derivatives)
    # Both modes sum the same chain-rule products in another order: float32 rounding of sums of a few
    # hundred terms of order one, relative to the largest derivative.
    scale = 1.0 + float(jnp.max(jnp.abs(reverse)))
    chex.assert_trees_all_close(forward, reverse, atol=1e-5 * scale, rtol=1e-4)
    chex.assert_trees_all_close(jvp, reverse_times_tangent, atol=1e-5 * scale, rtol=1e-4)


@_ids("forward_mode")
def test_forward_mode_linearize_and_hessian_agree_with_reverse_mode_in_value_and_context(entry):
    case = entry.case
    value, context = _one_row(case)
    fn, x = _flat(lambda inputs: case.forward(*inputs), (value, context))

    @jax.jit
    def derivatives(x, tangent, value):
        output, linear = jax.linearize(fn, x)
        hessian = jax.hessian(lambda v: _log_density(case, v, context))(value)
        return _forward_and_reverse(fn, x, tangent), (output, linear(tangent), fn(x)), hessian

    modes, (output, linear, expected_output), hessian = derivatives(x, jnp.cos(3.0 * x), value)
    _assert_forward_matches_reverse(modes)
    # linearize gives the value and the jvp: the same programs evaluated twice, equal up to XLA's fusion choices.
    chex.assert_trees_all_close(output, expected_output, atol=1e-5, rtol=1e-5)
    chex.assert_trees_all_close(linear, modes[2], atol=1e-5, rtol=1e-5)
    _assert_symmetric(hessian.reshape(value.size, value.size))


@_ids("forward_mode_params")
def test_forward_mode_agrees_with_reverse_mode_in_the_parameters(entry):
    case = entry.case
    value, context = _one_row(case)
    fn, x = _flat(lambda params: case.apply(params, value, context), case.params)
    _assert_forward_matches_reverse(jax.jit(_forward_and_reverse, static_argnums=0)(fn, x, jnp.cos(3.0 * x)))


def _log_density(case, value, context):
    """The entry's log-density of one row: log N(output) + log-det for a map onto N(0, I), the baselines' log_prob."""
    output, log_det = case.forward(value, context)
    if log_det is None:
        return jnp.sum(output)
    return jnp.sum(standard_normal_log_prob(output, output.ndim - 1) + log_det)


def _assert_symmetric(hessian):
    """The Hessian of the log-density (forward over reverse) is finite and symmetric."""
    chex.assert_tree_all_finite(hessian)
    # Forward over reverse computes the two triangles by different sums: float32 rounding relative to the
    # largest second derivative.
    scale = 1.0 + float(jnp.max(jnp.abs(hessian)))
    chex.assert_trees_all_close(hessian, hessian.T, atol=1e-5 * scale, rtol=1e-4)
