"""Every bijector, flow, dequantizer and baseline of jcnf, each with a factory for tiny inputs.

`test_registry.py` runs the same property tests over all of them and
`test_float64.py` repeats the exactness checks in float64. Adding a
bijector is one `Entry` in `REGISTRY`. An entry names, in `not_applicable`,
each property that does not hold for it and why; the property tests skip
those entries by construction (they are not parametrized over them).

Tolerances are float32's: round trips through a few dozen layers agree to
~1e-5 (bijectors) or ~1e-4 (whole flows), and log-dets from the closed form
and from slogdet of a dense Jacobian of at most 32 dimensions to ~1e-4 (1e-3
for a two-level Glow, whose log-det sums ~30 terms of order 1).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional

import distrax
import jax
import jax.numpy as jnp
import numpy as np
from conftest import perturb

from jcnf import bijectors as jb
from jcnf.baselines import DiscretizedLogisticBaseline, FactorizedBernoulli
from jcnf.dequantize import BinaryDequantizer, VariationalDequantizer, uniform_dequantization
from jcnf.distributions import standard_normal_log_prob
from jcnf.flows import ConditionalGlow, ConditionalRealNVP, SuperResolutionGlow

Array = jax.Array
# (value, context) -> (output, log|det d output / d value| of shape [batch], or None when not a bijection).
Forward = Callable[[Array, Optional[Array]], tuple[Array, Optional[Array]]]

PROPERTIES = ("round_trip", "log_det", "vmap", "grad", "context", "bad_input", "float64")


@dataclasses.dataclass(frozen=True)
class Case:
    """One object under test, built on tiny inputs.

    Attributes:
      forward: (value, context) -> (output, log-det [batch] or None).
      value: [batch, *event_shape] with batch 2.
      context: its context (an array or a tuple of arrays with the batch first), or None for an
        unconditional object.
      other_context: a different context of the same structure (None when unconditional).
      inverse: (output, context) -> (value, log|det d value / d output| [batch]), or None.
      bad_input: a call that must raise ValueError matching `bad_match`.
      bad_match: a regular expression naming the offending argument.
      round_trip_atol: tolerance of value == inverse(forward(value)).
      log_det_atol: tolerance of the log-det against the brute-force Jacobian.
    """

    forward: Forward
    value: Array
    context: Any
    other_context: Any
    inverse: Optional[Forward] = None
    bad_input: Optional[Callable[[], Any]] = None
    bad_match: str = ""
    round_trip_atol: float = 1e-5
    log_det_atol: float = 1e-4


@dataclasses.dataclass(frozen=True)
class Entry:
    """A registry row: a name, a factory `make(dtype) -> Case` and the properties that do not apply."""

    name: str
    make: Callable[[Any], Case]
    not_applicable: dict = dataclasses.field(default_factory=dict)

    @functools.cached_property
    def case(self) -> Case:
        """The float32 case, built once per test process: initializing and perturbing is the slow part."""
        return self.make(jnp.float32)


def _key(seed: int) -> Array:
    return jax.random.PRNGKey(seed)


def _cast(tree: Any, dtype: Any) -> Any:
    return jax.tree.map(lambda leaf: leaf.astype(dtype), tree)


# Bijectors -----------------------------------------------------------------

def _conditioner(out_channels: int, dtype: Any) -> Callable[[Array, Array], Array]:
    """A fixed non-linear conditioner of (x_half, context) for the couplings."""
    def conditioner(x_half: Array, context: Array) -> Array:
        weight = 0.5 * jax.random.normal(_key(0), (x_half.shape[-1] + context.shape[-1], out_channels), dtype)
        return jnp.tanh(jnp.concatenate([x_half, context], -1) @ weight)
    return conditioner


def _image(dtype: Any, channels: int = 4) -> Array:
    return jax.random.normal(_key(2), (2, 4, 4, channels), dtype)


def _unconditional(bijector: distrax.Bijector, value: Array, **kwargs: Any) -> Case:
    return Case(forward=lambda v, c: bijector.forward_and_log_det(v), value=value, context=None, other_context=None,
                inverse=lambda y, c: bijector.inverse_and_log_det(y), **kwargs)


def _actnorm(dtype: Any) -> Case:
    bijector = jb.ActNorm(jax.random.normal(_key(1), (4,), dtype), 0.3 * jax.random.normal(_key(3), (4,), dtype))
    return _unconditional(bijector, _image(dtype))


def _conv1x1(dtype: Any, permuted: bool = False) -> Case:
    lower, upper, log_diag = _cast(jb.random_rotation_lu(_key(1), 4), dtype)
    if permuted:
        bijector = jb.InvConv1x1(lower, upper, log_diag, permutation=np.array([2, 0, 3, 1]))
    else:
        bijector = jb.InvConv1x1(lower + 0.1, upper + 0.2, log_diag + 0.3)
    return _unconditional(bijector, _image(dtype))


def _squeeze(dtype: Any) -> Case:
    return _unconditional(jb.Squeeze(), _image(dtype, 3), bad_input=lambda: jb.Squeeze().forward(
        jnp.zeros((1, 3, 4, 1), dtype)), bad_match="even height")


def _coupling(kind: str, swap: bool = False) -> Callable[[Any], Case]:
    out_channels = {"affine": 4, "additive": 2, "spline": 2 * 25}[kind]

    def make(dtype: Any) -> Case:
        def bijector(context: Array) -> distrax.Bijector:
            conditioner = _conditioner(out_channels, dtype)
            if kind == "spline":
                return jb.ConditionalSplineCoupling(conditioner, context, 2, 3, swap=swap, num_bins=8)
            return jb.make_coupling(kind, conditioner, context, 2, 3, swap=swap)
        context = jax.random.normal(_key(3), (2, 4, 4, 3), dtype)
        return Case(forward=lambda v, c: bijector(c).forward_and_log_det(v), value=_image(dtype), context=context,
                    other_context=context + 1.0, inverse=lambda y, c: bijector(c).inverse_and_log_det(y),
                    bad_input=lambda: jb.make_coupling("quadratic", _conditioner(2, dtype), context, 2, 3),
                    bad_match="`coupling`")
    return make


# Flows ---------------------------------------------------------------------

def _flow(model: Any, value: Array, context: Array, scale: float, bad_value: Array, bad_match: str,
          dtype: Any, **kwargs: Any) -> Case:
    variables = jax.jit(model.init)(_key(0), value.astype(jnp.float32), context.astype(jnp.float32))
    # Perturbed, so that the zero-initialised couplings and priors are not the identity.
    variables = _cast(perturb(variables, _key(5), scale), dtype)
    return Case(forward=lambda v, c: model.apply(variables, v, c, method="forward_and_log_det"),
                value=value, context=context, other_context=context[::-1],
                inverse=lambda z, c: model.apply(variables, z, c, method="inverse_and_log_det"),
                bad_input=lambda: model.apply(variables, bad_value, context), bad_match=bad_match, **kwargs)


def _realnvp(dtype: Any) -> Case:
    value = jax.random.normal(_key(1), (2, 3), dtype)
    context = jax.random.normal(_key(2), (2, 2), dtype)
    # Perturbations of 0.1: at 0.2 the log-scales compound so that float32 round trips drift by 1e-3
    # (float64 ones stay exact, test_float64).
    return _flow(ConditionalRealNVP(blocks=3, hidden=8), value, context, 0.1, value[:, :1], "dim >= 2", dtype,
                 round_trip_atol=1e-4)


def _glow(dtype: Any) -> Case:
    value = jax.random.uniform(_key(1), (2, 4, 4, 2), dtype)
    context = jax.random.normal(_key(2), (2, 2, 2, 3), dtype)
    model = ConditionalGlow(levels=2, blocks=1, hidden=8, context_features=4, encoder_blocks=1)
    return _flow(model, value, context, 0.05, value[:, :3, :3], "divisible by 2\\^levels", dtype,
                 round_trip_atol=1e-4, log_det_atol=1e-3)


def _superres(dtype: Any) -> Case:
    value = jax.random.uniform(_key(1), (2, 4, 4, 1), dtype)
    context = value.reshape(2, 2, 2, 2, 2, 1).mean((2, 4))
    model = SuperResolutionGlow(levels=1, blocks=1, hidden=4, context_features=4, encoder_blocks=1)
    return _flow(model, value, context, 0.2, value[..., 0], "`value`", dtype)


# Dequantizers and baselines --------------------------------------------------

def _uniform(dtype: Any) -> Case:
    dequantize = uniform_dequantization(4)
    value = jax.random.randint(_key(1), (2, 2, 2, 1), 0, 4).astype(dtype) / 4
    return Case(forward=lambda v, c: dequantize(_key(3), v, {}), value=value, context=None, other_context=None,
                bad_input=lambda: uniform_dequantization(1), bad_match="`num_bins`")


def _noise_map(model: Any, variables: Any) -> Forward:
    """Eps -> noise u given (value, context), with log|det du/deps| = log N(eps) - log q(u) (change of variables)."""
    def forward(eps: Array, condition: tuple[Array, Array]) -> tuple[Array, Array]:
        value, context = condition
        noise, log_q = model.apply(variables, eps, value, context, method="noise_and_log_density")
        return noise, standard_normal_log_prob(eps, 3) - log_q
    return forward


def _dequantizer(model: Any, value: Array, context: Array, scale: float, dtype: Any) -> Case:
    """The map eps -> noise of a learned dequantizer; its "context" is the pair (value, context)."""
    variables = jax.jit(model.init)(_key(1), _key(2), value, {"context": context})
    variables = _cast({"params": perturb(variables["params"], _key(3), scale)}, dtype)
    eps = 1.5 * jax.random.normal(_key(5), value.shape, dtype)
    return Case(forward=_noise_map(model, variables), value=eps, context=(value, context),
                other_context=(value, context + 0.5),
                bad_input=lambda: model.apply(variables, _key(0), value[0], {"context": context}), bad_match="`value`",
                log_det_atol=2e-4)


def _variational(dtype: Any) -> Case:
    model = VariationalDequantizer(num_bins=4, levels=1, blocks=1, hidden=4, context_features=4, encoder_blocks=1)
    value = jax.random.randint(_key(1), (2, 2, 2, 1), 0, 4).astype(dtype) / 4
    return _dequantizer(model, value, jax.random.uniform(_key(2), (2, 1, 1, 1), dtype), 0.3, dtype)


def _binary(dtype: Any) -> Case:
    value = (jax.random.uniform(_key(1), (2, 4, 4, 1)) < 0.5).astype(dtype)
    return _dequantizer(BinaryDequantizer(hidden=8), value, jax.random.normal(_key(2), (2, 4, 4, 2), dtype), 0.05,
                        dtype)


def _baseline(model: Any, value: Array, context: Array, bad_match: str, dtype: Any) -> Case:
    variables = jax.jit(model.init)(_key(0), value, context)
    variables = _cast({"params": perturb(variables["params"], _key(3), 0.3)}, dtype)
    return Case(forward=lambda v, c: (model.apply(variables, v, c), None), value=value, context=context,
                other_context=context + 0.3, bad_input=lambda: model.apply(variables, value[0], context),
                bad_match=bad_match)


def _bernoulli(dtype: Any) -> Case:
    value = (jax.random.uniform(_key(1), (2, 4, 4, 1)) < 0.3).astype(dtype)
    return _baseline(FactorizedBernoulli(features=4, blocks=1, hidden=4), value,
                     jax.random.normal(_key(2), (2, 4, 4, 2), dtype), "`value`", dtype)


def _logistic(dtype: Any) -> Case:
    model = DiscretizedLogisticBaseline(hidden=4, head_blocks=1, num_mixtures=2, context_features=4,
                                        encoder_blocks=1, num_bins=4)
    value = jax.random.randint(_key(1), (2, 2, 2, 1), 0, 4).astype(dtype) / 4
    context = jax.random.uniform(_key(2), (2, 1, 1, 1), dtype, maxval=0.99)
    return _baseline(model, value, context, "`value`", dtype)


_UNCONDITIONAL = "an unconditional bijector: it has no context"
_NOT_CHECKED = "distrax's convention: the caller (a flow) checks shapes"
_NOT_BIJECTIVE_DEQ = "a dequantizer draws noise; it has no inverse"
_GLOW_FLOAT32 = "the Glow's scanned steps carry float32 state, so it runs in float32 only"
_NOT_BIJECTIVE_BASE = "a baseline is a density of discrete values, not a bijection"

REGISTRY = (
    Entry("actnorm", _actnorm, {"context": _UNCONDITIONAL, "bad_input": _NOT_CHECKED}),
    Entry("conv1x1", _conv1x1, {"context": _UNCONDITIONAL, "bad_input": _NOT_CHECKED}),
    Entry("conv1x1_permuted", functools.partial(_conv1x1, permuted=True),
          {"context": _UNCONDITIONAL, "bad_input": _NOT_CHECKED}),
    Entry("squeeze", _squeeze, {"context": _UNCONDITIONAL}),
    Entry("affine_coupling", _coupling("affine")),
    Entry("affine_coupling_swapped", _coupling("affine", swap=True)),
    Entry("additive_coupling", _coupling("additive")),
    Entry("spline_coupling", _coupling("spline")),
    Entry("realnvp", _realnvp),
    Entry("glow", _glow, {"float64": _GLOW_FLOAT32}),
    Entry("superres_glow", _superres, {"float64": _GLOW_FLOAT32}),
    Entry("uniform_dequantizer", _uniform, {
        "round_trip": _NOT_BIJECTIVE_DEQ,
        "log_det": "its correction is -D log(num_bins), not a Jacobian (value + u has unit Jacobian)",
        "vmap": "the noise is drawn for the whole batch from one key", "context": "it ignores the context"}),
    Entry("variational_dequantizer", _variational, {"round_trip": _NOT_BIJECTIVE_DEQ + " (eps -> u only)",
                                                    "float64": "its noise flow is a Glow: " + _GLOW_FLOAT32}),
    Entry("binary_dequantizer", _binary, {
        "round_trip": "the inverse route returns log q only; test_dequantize_binary checks it"}),
    Entry("bernoulli_baseline", _bernoulli, {"round_trip": _NOT_BIJECTIVE_BASE, "log_det": _NOT_BIJECTIVE_BASE}),
    Entry("logistic_baseline", _logistic, {"round_trip": _NOT_BIJECTIVE_BASE, "log_det": _NOT_BIJECTIVE_BASE}),
)


def entries(prop: str) -> list[Entry]:
    """The registry entries for which property `prop` applies."""
    if prop not in PROPERTIES:
        raise ValueError(f"`prop` must be one of {PROPERTIES}; got {prop!r}.")
    return [entry for entry in REGISTRY if prop not in entry.not_applicable]
