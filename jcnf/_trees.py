"""How two parameter trees differ, by leaf path and shape, for the error messages of checkpoints and saved models."""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax

_SHOWN = 5  # entries of each kind listed in a message


def _key_name(key: Any) -> str:
    # Dicts, sequences and named tuples are saved as nested dicts and lists:
    # compare by the plain name or index of each level.
    for attribute in ("key", "idx", "name"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def leaf_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """{"params/flow/...": shape} of every leaf (arrays, `jax.ShapeDtypeStruct`s or orbax array metadata)."""
    leaves = jax.tree_util.tree_leaves_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))
    return {"/".join(_key_name(key) for key in path): tuple(leaf.shape) for path, leaf in leaves}


def listed(names: list[str]) -> str:
    """The first few `names`, comma-separated, with how many more there are."""
    more = f", ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def shape_differences(stored: Any, wanted: Any, stored_name: str, wanted_name: str,
                      rank: Optional[Callable[[str], Any]] = None) -> list[str]:
    """Sentences listing the leaves missing from `stored`, those not in `wanted`, and those of other shapes.

    Args:
      stored: the tree that was read (a checkpoint's, a saved model's).
      wanted: the tree it should match.
      stored_name: how the messages name `stored`, e.g. "the checkpoint".
      wanted_name: how they name `wanted`, e.g. "this model's state".
      rank: sort key of a leaf path (default: the path).

    Returns:
      One sentence per kind of difference; empty when the trees match.
    """
    saved, expected = leaf_shapes(stored), leaf_shapes(wanted)
    missing = sorted(set(expected) - set(saved), key=rank)
    extra = sorted(set(saved) - set(expected), key=rank)
    reshaped = sorted((path for path in set(saved) & set(expected) if saved[path] != expected[path]), key=rank)
    parts = []
    if missing:
        parts.append(f"Missing from {stored_name} ({len(missing)}): {listed(missing)}.")
    if extra:
        parts.append(f"Not in {wanted_name} ({len(extra)}): {listed(extra)}.")
    if reshaped:
        parts.append(f"Shapes differ ({len(reshaped)}): " + listed(
            [f"{path} {saved[path]} in {stored_name} vs {expected[path]}" for path in reshaped]) + ".")
    return parts
