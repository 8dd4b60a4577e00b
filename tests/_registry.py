"""Every bijector, flow, dequantizer and baseline of jcnf, each with a factory for tiny inputs.

`test_registry.py` runs the same property tests over all of them and
`test_float64.py` repeats the exactness checks in float64. Adding a
bijector is one `Entry` in `REGISTRY`. An entry with parameters exposes them
(`Case.params`) with the map as a function of them (`Case.apply`), so that
derivatives with respect to the parameters are tested too. An entry names, in `not_applicable`,
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
from jcnf.flows import ConditionalGlow, ConditionalMAF, ConditionalRealNVP, SuperResolutionGlow
from jcnf.nets import CNNEmbedding, DeepSetEmbedding

Array = jax.Array
# (value, context) -> (output, log|det d output / d value| of shape [batch], or None when not a bijection).
Forward = Callable[[Array, Optional[Array]], tuple[Array, Optional[Array]]]

PROPERTIES = ("round_trip", "log_det", "vmap", "grad", "context", "bad_input", "float64", "forward_mode",
              "forward_mode_params", "linearize", "hessian")


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
      params: the parameters `forward` closes over (a pytree of float arrays), or None when it has none.
      apply: (params, value, context) -> what `forward` returns, or None when it has no parameters.
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
    params: Any = None
    apply: Optional[Callable[[Any, Array, Any], tuple[Array, Optional[Array]]]] = None


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

def _conditioner_weight(in_channels: int, out_channels: int, dtype: Any) -> Array:
    return 0.5 * jax.random.normal(_key(0), (in_channels, out_channels), dtype)


def _conditioner(weight: Array) -> Callable[[Array, Array], Array]:
    """A non-linear conditioner of (x_half, context) for the couplings, tanh(concat @ weight)."""
    def conditioner(x_half: Array, context: Array) -> Array:
        return jnp.tanh(jnp.concatenate([x_half, context], -1) @ weight)
    return conditioner


def _image(dtype: Any, channels: int = 4) -> Array:
    return jax.random.normal(_key(2), (2, 4, 4, channels), dtype)


def _unconditional(make_bijector: Callable[[Any], distrax.Bijector], params: Any, value: Array,
                   **kwargs: Any) -> Case:
    """A case of the bijector `make_bijector(params)`; `params` None for a bijector without parameters."""
    def apply(p: Any, v: Array, c: Any) -> tuple[Array, Array]:
        return make_bijector(p).forward_and_log_det(v)
    return Case(forward=functools.partial(apply, params), value=value, context=None, other_context=None,
                inverse=lambda y, c: make_bijector(params).inverse_and_log_det(y),
                params=params, apply=None if params is None else apply, **kwargs)


def _actnorm(dtype: Any) -> Case:
    params = (jax.random.normal(_key(1), (4,), dtype), 0.3 * jax.random.normal(_key(3), (4,), dtype))
    return _unconditional(lambda p: jb.ActNorm(*p), params, _image(dtype))


def _conv1x1(dtype: Any, permuted: bool = False) -> Case:
    lower, upper, log_diag = _cast(jb.random_rotation_lu(_key(1), 4), dtype)
    if permuted:
        return _unconditional(lambda p: jb.InvConv1x1(*p, permutation=np.array([2, 0, 3, 1])),
                              (lower, upper, log_diag), _image(dtype))
    return _unconditional(lambda p: jb.InvConv1x1(*p), (lower + 0.1, upper + 0.2, log_diag + 0.3), _image(dtype))


def _box_logit(dtype: Any) -> Case:
    lower, upper = jnp.array([-1.0, 0.0, 2.0], dtype), jnp.array([1.0, 0.5, 5.0], dtype)
    value = lower[None] + (upper - lower)[None] * jax.random.uniform(_key(1), (2, 3), dtype, 0.05, 0.95)
    return _unconditional(lambda p: jb.BoxLogit(*p), (lower, upper), value)


def _squeeze(dtype: Any) -> Case:
    return _unconditional(lambda p: jb.Squeeze(), None, _image(dtype, 3), bad_input=lambda: jb.Squeeze().forward(
        jnp.zeros((1, 3, 4, 1), dtype)), bad_match="even height")


def _coupling(kind: str, swap: bool = False) -> Callable[[Any], Case]:
    out_channels = {"affine": 4, "additive": 2, "spline": 2 * 25}[kind]

    def make(dtype: Any) -> Case:
        def bijector(weight: Array, context: Array) -> distrax.Bijector:
            conditioner = _conditioner(weight)
            if kind == "spline":
                return jb.ConditionalSplineCoupling(conditioner, context, 2, 3, swap=swap, num_bins=8)
            return jb.make_coupling(kind, conditioner, context, 2, 3, swap=swap)

        def apply(weight: Array, v: Array, c: Array) -> tuple[Array, Array]:
            return bijector(weight, c).forward_and_log_det(v)

        context = jax.random.normal(_key(3), (2, 4, 4, 3), dtype)
        weight = _conditioner_weight(2 + 3, out_channels, dtype)
        return Case(forward=functools.partial(apply, weight), value=_image(dtype), context=context,
                    other_context=context + 1.0, inverse=lambda y, c: bijector(weight, c).inverse_and_log_det(y),
                    bad_input=lambda: jb.make_coupling("quadratic", _conditioner(weight[:, :2]), context, 2, 3),
                    bad_match="`coupling`", params=weight, apply=apply)
    return make


def _autoregressive(transformer: str) -> Callable[[Any], Case]:
    params_per_dim = jb.transformer_param_size(transformer, 4)

    def make(dtype: Any) -> Case:
        dim, features = 3, 2
        weight = jnp.tril(jax.random.normal(_key(4), (dim, dim), dtype), -1)
        scale = jax.random.normal(_key(5), (params_per_dim,), dtype)
        mixing = 0.5 * jax.random.normal(_key(6), (features, dim * params_per_dim), dtype)

        def conditioner(x: Array, context: Array) -> Array:
            # Entry i of `x @ weight.T` sums x_j over j < i only: an autoregressive map, as a MADE's.
            from_value = (x @ weight.T)[..., None] * scale.reshape((1,) * x.ndim + scale.shape)
            return jnp.tanh(from_value + (context @ mixing).reshape(*context.shape[:-1], dim, params_per_dim))

        def bijector(context: Array) -> distrax.Bijector:
            return jb.ConditionalMaskedAutoregressive(conditioner, context, transformer, num_bins=4)
        value = jax.random.normal(_key(1), (2, dim), dtype)
        context = jax.random.normal(_key(3), (2, features), dtype)
        return Case(forward=lambda v, c: bijector(c).forward_and_log_det(v), value=value, context=context,
                    other_context=context + 1.0, inverse=lambda y, c: bijector(c).inverse_and_log_det(y),
                    bad_input=lambda: jb.ConditionalMaskedAutoregressive(conditioner, context, "quadratic"),
                    bad_match="`transformer`")
    return make


# Flows ---------------------------------------------------------------------

def _flow(model: Any, value: Array, context: Array, scale: float, bad_value: Array, bad_match: str,
          dtype: Any, **kwargs: Any) -> Case:
    variables = jax.jit(model.init)(_key(0), value.astype(jnp.float32), context.astype(jnp.float32))
    # Perturbed, so that the zero-initialised couplings and priors are not the identity.
    variables = _cast(perturb(variables, _key(5), scale), dtype)

    def apply(params: Any, v: Array, c: Array) -> tuple[Array, Array]:
        return model.apply({"params": params}, v, c, method="forward_and_log_det")

    return Case(forward=functools.partial(apply, variables["params"]),
                value=value, context=context, other_context=context[::-1],
                inverse=lambda z, c: model.apply(variables, z, c, method="inverse_and_log_det"),
                bad_input=lambda: model.apply(variables, bad_value, context), bad_match=bad_match,
                params=variables["params"], apply=apply, **kwargs)


def _realnvp(dtype: Any, **kwargs: Any) -> Case:
    value = jax.random.normal(_key(1), (2, 3), dtype)
    # With an image embedding the context is a 4x4 single-channel image.
    shape = (2, 4, 4, 1) if "embedding" in kwargs else (2, 2)
    context = jax.random.normal(_key(2), shape, dtype)
    # Perturbations of 0.1: at 0.2 the log-scales compound so that float32 round trips drift by 1e-3
    # (float64 ones stay exact, test_float64).
    return _flow(ConditionalRealNVP(blocks=3, hidden=8, **kwargs), value, context, 0.1, value[:, :1], "dim >= 2",
                 dtype, round_trip_atol=1e-4)


def _maf(transformer: str, embedding: bool = False) -> Callable[[Any], Case]:
    def make(dtype: Any) -> Case:
        value = jax.random.normal(_key(1), (2, 3), dtype)
        # With a set embedding the context is 3 items of 2 features each.
        shape = (2, 3, 2) if embedding else (2, 2)
        context = jax.random.normal(_key(2), shape, dtype)
        model = ConditionalMAF(blocks=2, hidden=8, transformer=transformer, num_bins=4,
                               embedding=DeepSetEmbedding(features=4, hidden=8, depth=1) if embedding else None)
        return _flow(model, value, context, 0.1, value[:, :, None], "`value`", dtype, round_trip_atol=1e-4)
    return make


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


def _noise_map(model: Any) -> Callable[[Any, Array, tuple[Array, Array]], tuple[Array, Array]]:
    """(params, eps, (value, context)) -> noise u, with log|det du/deps| = log N(eps) - log q(u)."""
    def apply(params: Any, eps: Array, condition: tuple[Array, Array]) -> tuple[Array, Array]:
        value, context = condition
        noise, log_q = model.apply({"params": params}, eps, value, context, method="noise_and_log_density")
        return noise, standard_normal_log_prob(eps, 3) - log_q
    return apply


def _dequantizer(model: Any, value: Array, context: Array, scale: float, dtype: Any) -> Case:
    """The map eps -> noise of a learned dequantizer; its "context" is the pair (value, context)."""
    variables = jax.jit(model.init)(_key(1), _key(2), value, {"context": context})
    variables = _cast({"params": perturb(variables["params"], _key(3), scale)}, dtype)
    eps = 1.5 * jax.random.normal(_key(5), value.shape, dtype)
    apply = _noise_map(model)
    return Case(forward=functools.partial(apply, variables["params"]), value=eps, context=(value, context),
                other_context=(value, context + 0.5),
                bad_input=lambda: model.apply(variables, _key(0), value[0], {"context": context}), bad_match="`value`",
                log_det_atol=2e-4, params=variables["params"], apply=apply)


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

    def apply(params: Any, v: Array, c: Array) -> tuple[Array, None]:
        return model.apply({"params": params}, v, c), None

    return Case(forward=functools.partial(apply, variables["params"]), value=value, context=context,
                other_context=context + 0.3, bad_input=lambda: model.apply(variables, value[0], context),
                bad_match=bad_match, params=variables["params"], apply=apply)


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
_CLOSED_CONDITIONER = ("its test conditioner closes over fixed arrays; the parameter columns run through "
                       "ConditionalMAF's entries, whose MADE owns the same bijector's parameters")
_NO_PARAMS = "it has no parameters"

REGISTRY = (
    Entry("actnorm", _actnorm, {"context": _UNCONDITIONAL, "bad_input": _NOT_CHECKED}),
    Entry("conv1x1", _conv1x1, {"context": _UNCONDITIONAL, "bad_input": _NOT_CHECKED}),
    Entry("conv1x1_permuted", functools.partial(_conv1x1, permuted=True),
          {"context": _UNCONDITIONAL, "bad_input": _NOT_CHECKED}),
    Entry("squeeze", _squeeze, {"context": _UNCONDITIONAL, "forward_mode_params": _NO_PARAMS}),
    Entry("box_logit", _box_logit, {"context": _UNCONDITIONAL, "bad_input": _NOT_CHECKED}),
    Entry("affine_coupling", _coupling("affine")),
    Entry("affine_coupling_swapped", _coupling("affine", swap=True)),
    Entry("additive_coupling", _coupling("additive")),
    Entry("spline_coupling", _coupling("spline")),
    Entry("masked_autoregressive_affine", _autoregressive("affine"), {"forward_mode_params": _CLOSED_CONDITIONER}),
    Entry("masked_autoregressive_spline", _autoregressive("spline"), {"forward_mode_params": _CLOSED_CONDITIONER}),
    Entry("realnvp", _realnvp),
    # Without ActNorm: its data-dependent init on the 2-row example after a rotation makes scales of ~1e5 that
    # amplify float32 rounding in the round trip; LU with ActNorm on 64 rows is in test_flows_realnvp.py.
    Entry("realnvp_lu_residual", functools.partial(_realnvp, mixing="lu", conditioner="residual", actnorm=False)),
    Entry("realnvp_reverse", functools.partial(_realnvp, mixing="reverse")),
    Entry("realnvp_image_embedding", functools.partial(_realnvp, embedding=CNNEmbedding(features=4, channels=(4,)))),
    Entry("maf_affine", _maf("affine")),
    Entry("maf_spline", _maf("spline")),
    Entry("maf_set_embedding", _maf("affine", embedding=True)),
    Entry("glow", _glow, {"float64": _GLOW_FLOAT32}),
    Entry("superres_glow", _superres, {"float64": _GLOW_FLOAT32}),
    Entry("uniform_dequantizer", _uniform, {
        "round_trip": _NOT_BIJECTIVE_DEQ,
        "log_det": "its correction is -D log(num_bins), not a Jacobian (value + u has unit Jacobian)",
        "vmap": "the noise is drawn for the whole batch from one key", "context": "it ignores the context",
        "forward_mode_params": _NO_PARAMS}),
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
