"""The naive baseline: jcnf's architectures written the way a careful user writes them with plain distrax.

Same networks (jcnf's own Flax conditioners, context encoder and priors,
applied to the same parameter values), same bijections, jitted the same way;
the differences are the ones listed in `DIFFERENCES`, each something jcnf
does better:

* the 1x1 convolution keeps a dense weight W, takes its log-det from
  `jnp.linalg.slogdet(W)` on every call, and inverts by `jnp.linalg.inv(W)`
  on every call (jcnf: an LU parameterization whose log-det is a sum of
  log-diagonal entries and whose inverse is two triangular solves);
* ActNorm is `distrax.Block(distrax.ScalarAffine(...), 3)`, whose log-det
  broadcasts the per-channel log-scale to every element and sums it (jcnf:
  positions * sum(log_scale));
* each level's blocks are composed with `distrax.Chain`.
"""

from __future__ import annotations

from typing import Callable

import distrax
import jax
import jax.numpy as jnp
from jax import Array

import jcnf
from jcnf.bijectors.coupling import bounded_affine, bounded_shift, coupling_param_size
from jcnf.bijectors.squeeze import squeeze2x2, unsqueeze2x2
from jcnf.distributions.gaussian import ConditionalDiagGaussian, SplitPrior
from jcnf.nets.coupling_nets import ConvCouplingNet, MLPCouplingNet
from jcnf.nets.encoder import ContextEncoder

DIFFERENCES = {
    "conv1x1_log_det": "dense W, jnp.linalg.slogdet(W) per call (jcnf: LU form, positions * sum(log_diag))",
    "conv1x1_inverse": "jnp.linalg.inv(W) per call (a pivoted LU and inverse of W each time, as normflows "
                       "does with torch.inverse); jcnf: two triangular solves of the stored LU factors",
    "actnorm": "distrax.Block(distrax.ScalarAffine) with the log-scale broadcast to every element and summed "
               "(jcnf: positions * sum(log_scale))",
    "composition": "distrax.Chain per level (jcnf: one lax.scan over the level's stacked blocks)",
}


class DenseConv1x1(distrax.Bijector):
    """y = x W^T per position with a dense W: slogdet and a matrix inverse on every call.

    (The inverse multiplies by inv(W) rather than calling `jnp.linalg.solve`
    with every position as a right-hand side: on XLA:CPU that solve costs
    ~7 ms for 12 channels and 512 positions, a strawman no careful user keeps.)
    """

    def __init__(self, weight: Array, event_ndims: int = 3):
        super().__init__(event_ndims_in=event_ndims)
        self.weight = weight

    def _log_det(self, x: Array) -> Array:
        positions = 1
        for size in x.shape[x.ndim - self.event_ndims_in:-1]:
            positions *= size
        log_det = positions * jnp.linalg.slogdet(self.weight)[1]
        return jnp.broadcast_to(log_det, x.shape[:x.ndim - self.event_ndims_in])

    def forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
        return x @ self.weight.T, self._log_det(x)

    def inverse_and_log_det(self, y: Array) -> tuple[Array, Array]:
        return y @ jnp.linalg.inv(self.weight).T, -self._log_det(y)


def naive_actnorm(loc: Array, log_scale: Array, event_ndims: int) -> distrax.Bijector:
    # (x + loc) * exp(s) = x * exp(s) + loc * exp(s)
    return distrax.Block(distrax.ScalarAffine(shift=loc * jnp.exp(log_scale), log_scale=log_scale), event_ndims)


def naive_coupling(kind: str, conditioner: Callable[[Array], Array], split_index: int, event_ndims: int,
                   swap: bool = False, num_bins: int = 8) -> distrax.Bijector:
    """A distrax.SplitCoupling with the same inner bijector as jcnf's coupling of that kind."""
    def inner(params: Array) -> distrax.Bijector:
        if kind == "affine":
            return bounded_affine(params)
        if kind == "additive":
            return bounded_shift(params)
        params = params.reshape(*params.shape[:-1], -1, 3 * num_bins + 1)
        return distrax.RationalQuadraticSpline(params, range_min=-4.0, range_max=4.0, boundary_slopes="identity")
    return distrax.SplitCoupling(split_index=split_index, event_ndims=event_ndims, conditioner=conditioner,
                                 bijector=inner, swap=swap)


def dense_weight(conv_params: dict) -> Array:
    """The dense W = L U of jcnf's LU parameters (identity permutation)."""
    lower = jnp.tril(conv_params["lower"], -1) + jnp.eye(conv_params["lower"].shape[-1])
    upper = jnp.triu(conv_params["upper"], 1) + jnp.diag(jnp.exp(conv_params["log_diag"]))
    return lower @ upper


def _unstacked(stacked: dict) -> list[dict]:
    """One parameter subtree per block from a stack whose leaves are [K, ...]."""
    count = jax.tree.leaves(stacked)[0].shape[0]
    return [jax.tree.map(lambda leaf, k=k: leaf[k], stacked) for k in range(count)]


def naive_glow_params(model: jcnf.ConditionalGlow, params: dict) -> dict:
    """Jcnf ConditionalGlow parameters, one subtree per block, with every LU conv replaced by its dense weight.

    Done once, untimed: the naive flow is a `distrax.Chain` of separate blocks.
    """
    converted = {name: value for name, value in params.items() if not name.startswith("level_blocks_")}
    for level in range(model.levels):
        for k, block in enumerate(_unstacked(params[f"level_blocks_{level}"]["blocks"])):
            converted[f"block_{level}_{k}"] = {**block, "conv": {"weight": dense_weight(block["conv"])}}
    return converted


def _standardize(z, mean, log_scale, inverse):
    if inverse:
        return mean + jnp.exp(log_scale) * z, jnp.sum(log_scale, axis=(1, 2, 3))
    return (z - mean) * jnp.exp(-log_scale), -jnp.sum(log_scale, axis=(1, 2, 3))


class NaiveGlow:
    """forward_and_log_det / inverse of a `jcnf.ConditionalGlow`'s architecture, in plain distrax.

    Both are pure functions of (naive_params, array, context); jit them.
    """

    def __init__(self, model: jcnf.ConditionalGlow):
        if model.coupling not in ("affine", "additive", "spline"):
            raise ValueError(f"unknown coupling {model.coupling!r}")
        self.model = model

    def _features(self, params, context, spatial):
        m = self.model
        encoder = ContextEncoder(m.context_features, m.encoder_blocks, dtype=m.dtype)
        return encoder.apply({"params": params["encoder"]}, context, spatial, m.levels)

    def _level(self, params, level, channels, features) -> distrax.Bijector:
        m = self.model
        split = channels // 2
        out = coupling_param_size(m.coupling, channels - split, m.num_bins)
        blocks = []
        for k in range(m.blocks):
            p = params[f"block_{level}_{k}"]
            net = ConvCouplingNet(out, m.hidden, dtype=m.dtype)
            net_params = {"params": p["couple"]["net"]}
            conditioner = (lambda x1, net=net, net_params=net_params: net.apply(net_params, x1, features))
            blocks.append(distrax.Chain([
                naive_coupling(m.coupling, conditioner, split, 3, num_bins=m.num_bins),
                DenseConv1x1(p["conv"]["weight"]),
                naive_actnorm(p["actnorm"]["loc"], p["actnorm"]["log_scale"], 3)]))
        return distrax.Chain(blocks[::-1])  # Chain applies its last element first

    def forward_and_log_det(self, params: dict, value: Array, context: Array) -> tuple[Array, Array]:
        m = self.model
        features = self._features(params, context, value.shape[1:3])
        x, log_det, factored = value, jnp.zeros(value.shape[0], value.dtype), []
        for level in range(m.levels):
            x = squeeze2x2(x)
            x, level_log_det = self._level(params, level, x.shape[-1], features[level]).forward_and_log_det(x)
            log_det += level_log_det
            if level < m.levels - 1:
                kept, out = jnp.split(x, 2, axis=-1)
                mean, log_scale = SplitPrior().apply({"params": params[f"split_priors_{level}"]}, kept,
                                                     features[level])
                eps, prior_log_det = _standardize(out, mean, log_scale, inverse=False)
                factored.append(eps)
                x = kept
            else:
                mean, log_scale = ConditionalDiagGaussian().apply({"params": params["top_prior"]}, features[level],
                                                                  x.shape[1:], x.shape[0])
                x, prior_log_det = _standardize(x, mean, log_scale, inverse=False)
            log_det += prior_log_det
        z = unsqueeze2x2(x)
        for eps in reversed(factored):
            z = unsqueeze2x2(jnp.concatenate([z, eps], axis=-1))
        return z, log_det

    def inverse(self, params: dict, z: Array, context: Array) -> Array:
        m = self.model
        features = self._features(params, context, z.shape[1:3])
        factored = []
        for _ in range(m.levels - 1):
            z = squeeze2x2(z)
            z, eps = jnp.split(z, 2, axis=-1)
            factored.append(eps)
        z = squeeze2x2(z)
        mean, log_scale = ConditionalDiagGaussian().apply({"params": params["top_prior"]}, features[-1],
                                                          z.shape[1:], z.shape[0])
        x, _ = _standardize(z, mean, log_scale, inverse=True)
        for level in reversed(range(m.levels)):
            if level < m.levels - 1:
                mean, log_scale = SplitPrior().apply({"params": params[f"split_priors_{level}"]}, x, features[level])
                out, _ = _standardize(factored[level], mean, log_scale, inverse=True)
                x = jnp.concatenate([x, out], axis=-1)
            x = self._level(params, level, x.shape[-1], features[level]).inverse(x)
            x = unsqueeze2x2(x)
        return x


class NaiveRealNVP:
    """forward_and_log_det / inverse of a `jcnf.ConditionalRealNVP`'s architecture, in plain distrax.

    Only the ActNorm differs here (there is no 1x1 convolution in RealNVP).
    """

    def __init__(self, model: jcnf.ConditionalRealNVP):
        self.model = model

    def _chain(self, params, dim, context) -> distrax.Bijector:
        m = self.model
        # One subtree per coupling, as a Chain of separate bijectors wants.
        pairs = _unstacked(params["pairs"]["blocks"]) if "pairs" in params else []
        couplings = [half for pair in pairs for half in (pair["second_half"], pair["first_half"])]
        couplings += [params["last"]] if "last" in params else []
        split = dim // 2
        layers = []
        for i in range(m.blocks):
            swap = bool(i % 2)
            transformed = split if swap else dim - split
            net = MLPCouplingNet(coupling_param_size(m.coupling, transformed, m.num_bins), m.hidden)
            net_params = {"params": couplings[i]["coupling"]["net"]}
            if m.actnorm:
                layers.append(naive_actnorm(couplings[i]["actnorm"]["loc"], couplings[i]["actnorm"]["log_scale"], 1))
            layers.append(naive_coupling(m.coupling, lambda x1, net=net, p=net_params: net.apply(p, x1, context),
                                         split, 1, swap=swap, num_bins=m.num_bins))
        return distrax.Chain(layers[::-1])  # `layers` is in application order; Chain applies its last first

    def _base(self, params, context, dim, batch):
        return ConditionalDiagGaussian().apply({"params": params["base"]}, context, (dim,), batch)

    def forward_and_log_det(self, params: dict, value: Array, context: Array) -> tuple[Array, Array]:
        x, log_det = self._chain(params, value.shape[-1], context).forward_and_log_det(value)
        if self.model.conditional_base:
            mean, log_scale = self._base(params, context, value.shape[-1], value.shape[0])
            x = (x - mean) * jnp.exp(-log_scale)
            log_det -= jnp.sum(log_scale, axis=-1)
        return x, log_det

    def inverse(self, params: dict, z: Array, context: Array) -> Array:
        if self.model.conditional_base:
            mean, log_scale = self._base(params, context, z.shape[-1], z.shape[0])
            z = mean + jnp.exp(log_scale) * z
        return self._chain(params, z.shape[-1], context).inverse(z)
