"""Parameters saved before each level's steps were stacked, converted to the stacked layout.

Earlier jcnf releases kept one subtree per step: `ConditionalGlow` had
`flow_steps_<i>` for i = level * steps + k, `ConditionalRealNVP` had
`couplings_<i>` and `actnorms_<i>`. The current flows hold each level's steps
as one subtree with a leading [K] axis (`jcnf.flows.stack`). The arithmetic of
a step is unchanged, so stacking the old subtrees gives the same flow.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import jax

from jcnf.flows.reversible import stack_params

_LEGACY_KEY = re.compile(r"(flow_steps|couplings|actnorms)_\d+")


def legacy_keys(params: Mapping[str, Any]) -> list[str]:
    """The top-level keys of `params` that belong to the unstacked per-step layout, sorted."""
    return sorted(key for key in params if _LEGACY_KEY.fullmatch(key))


def stack_legacy_params(model: Any, params: Mapping[str, Any]) -> dict:
    """Converts a flow's unstacked parameter tree to the stacked layout of `model`.

    Args:
      model: the `ConditionalGlow` (or subclass) or `ConditionalRealNVP` the
        parameters belong to, with the same levels/steps or layers.
      params: the old tree under "params" (keys `flow_steps_<i>`, or
        `couplings_<i>` and `actnorms_<i>`).

    Returns:
      A new tree for `model.apply({"params": ...})`; untouched subtrees (the
      encoder, priors, shape marker) are the same objects.

    Raises:
      ValueError: `params` is not in the old layout, or its number of steps
        does not match the model's.
    """
    from jcnf.flows.glow import ConditionalGlow
    from jcnf.flows.realnvp import ConditionalRealNVP

    old = legacy_keys(params)
    if not old:
        raise ValueError("`params` has no unstacked per-step entries (flow_steps_<i>, couplings_<i>); "
                         "it is already in the stacked layout or not a jcnf flow's.")
    kept = {key: value for key, value in params.items() if key not in old}
    if isinstance(model, ConditionalGlow):
        count = model.levels * model.steps
        if sorted(old) != sorted(f"flow_steps_{i}" for i in range(count)):
            raise ValueError(f"`params` must hold flow_steps_0..flow_steps_{count - 1} for levels={model.levels}, "
                             f"steps={model.steps}; got {len(old)} step entries.")
        for level in range(model.levels):
            steps = [params[f"flow_steps_{level * model.steps + k}"] for k in range(model.steps)]
            kept[f"level_steps_{level}"] = {"steps": stack_params(steps)}
        return kept
    if isinstance(model, ConditionalRealNVP):
        def layer(i: int) -> dict:
            if f"couplings_{i}" not in params:
                raise ValueError(f"`params` has no couplings_{i} for layers={model.layers}.")
            entry = {"coupling": params[f"couplings_{i}"]}
            if model.actnorm:
                entry["actnorm"] = params[f"actnorms_{i}"]
            return entry

        if f"couplings_{model.layers}" in params:
            raise ValueError(f"`params` has more than layers={model.layers} couplings.")
        pairs = [{"second_half": layer(2 * j), "first_half": layer(2 * j + 1)} for j in range(model.layers // 2)]
        if pairs:
            kept["pairs"] = {"steps": stack_params(pairs)}
        if model.layers % 2:
            kept["last"] = layer(model.layers - 1)
        return kept
    raise ValueError(f"`model` must be a ConditionalGlow or ConditionalRealNVP; got {type(model).__name__}.")


def unstack_params(model: Any, params: Mapping[str, Any]) -> dict:
    """The inverse of `stack_legacy_params` (for tests and for exporting to the old layout)."""
    from jcnf.flows.glow import ConditionalGlow

    tree = dict(params)
    if isinstance(model, ConditionalGlow):
        for level in range(model.levels):
            stacked = tree.pop(f"level_steps_{level}")["steps"]
            for k in range(model.steps):
                tree[f"flow_steps_{level * model.steps + k}"] = jax.tree.map(lambda leaf, k=k: leaf[k], stacked)
        return tree
    layers = []
    if "pairs" in tree:
        stacked = tree.pop("pairs")["steps"]
        for j in range(jax.tree.leaves(stacked)[0].shape[0]):
            pair = jax.tree.map(lambda leaf, j=j: leaf[j], stacked)
            layers += [pair["second_half"], pair["first_half"]]
    if "last" in tree:
        layers.append(tree.pop("last"))
    for i, entry in enumerate(layers):
        tree[f"couplings_{i}"] = entry["coupling"]
        if "actnorm" in entry:
            tree[f"actnorms_{i}"] = entry["actnorm"]
    return tree
