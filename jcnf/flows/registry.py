"""The classes a saved model may name, and their constructor fields as JSON.

A saved model records its class by name and its constructor fields as JSON
values; loading looks the name up here and calls the class with the fields.
Nothing is unpickled and no module is imported by a name read from a file:
a class is known only if one of jcnf's own modules registered it with
`@register`, and the loader imports only the fixed `_MODULES` below, which
hold every registered class. The registry sits in `jcnf.flows` so that the
layers above (`jcnf.inverse`, `jcnf.baselines`) can register their classes
without the flows importing them.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, TypeVar

import jax.numpy as jnp
import numpy as np

# Every jcnf module that registers a class. Loading imports these and nothing else.
_MODULES = ("jcnf.flows", "jcnf.baselines", "jcnf.inverse")
# Flax fills these in when a module is bound; they are not constructor choices.
_SKIPPED_FIELDS = ("parent", "name")

_REGISTRY: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register(cls: T) -> T:
    """Class decorator: `cls` may be named by a saved model (under its class name)."""
    if not dataclasses.is_dataclass(cls):
        raise ValueError(f"`cls` must be a dataclass (a Flax module or a frozen dataclass); got {cls!r}.")
    known = _REGISTRY.get(cls.__name__)
    if known is not None and known is not cls:
        raise ValueError(f"A class named {cls.__name__!r} is already registered ({known.__module__}); "
                         "registered names must be unique.")
    _REGISTRY[cls.__name__] = cls
    return cls


def _import_registering_modules() -> None:
    for module in _MODULES:
        importlib.import_module(module)


def registered_class(name: str) -> type:
    """The registered class called `name`, importing jcnf's registering modules first.

    Raises:
      ValueError: no jcnf module registers a class of that name.
    """
    if name not in _REGISTRY:
        _import_registering_modules()
    if name not in _REGISTRY:
        raise ValueError(f"Unknown model class {name!r}: a saved model must name one of jcnf's registered "
                         f"classes {sorted(_REGISTRY)}.")
    return _REGISTRY[name]


def _encode(value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"class": type(value).__name__, "fields": model_fields(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [_encode(item, where) for item in value]
    try:  # a dtype given as jnp.float32, np.dtype("bfloat16") or similar
        return {"dtype": jnp.dtype(value).name}
    except TypeError:
        pass
    raise ValueError(f"Field `{where}` of value {value!r} cannot be saved: fields must be numbers, strings, "
                     f"booleans, None, dtypes, tuples of these or registered jcnf classes.")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_decode(item) for item in value)
    if isinstance(value, dict):
        if set(value) == {"dtype"}:
            return jnp.dtype(value["dtype"])
        if set(value) == {"class", "fields"}:
            return build_model(value["class"], value["fields"])
        raise ValueError(f"A saved field must be a JSON value, a dtype or a registered class; got {value!r}.")
    return value


def model_fields(model: Any) -> dict[str, Any]:
    """The constructor fields of a registered model instance, as JSON values.

    Args:
      model: an instance of a registered class; fields that are themselves
        registered instances (a `LatentCorrectedFlow`'s flow) nest.

    Raises:
      ValueError: the class is not registered, or a field is not JSON-able.
    """
    name = type(model).__name__
    if _REGISTRY.get(name) is not type(model):
        _import_registering_modules()
        if _REGISTRY.get(name) is not type(model):
            raise ValueError(f"`model` must be an instance of a registered jcnf class {sorted(_REGISTRY)}; got "
                             f"{name} ({type(model).__module__}).")
    return {field.name: _encode(getattr(model, field.name), f"{name}.{field.name}")
            for field in dataclasses.fields(model) if field.name not in _SKIPPED_FIELDS and field.init}


def build_model(name: str, fields: dict[str, Any]) -> Any:
    """An instance of the registered class `name` from fields written by `model_fields`.

    Raises:
      ValueError: the class is unknown, or a field is not one of its constructor's.
    """
    cls = registered_class(name)
    if not isinstance(fields, dict):
        raise ValueError(f"The fields of {name} must be a JSON object; got {fields!r}.")
    allowed = {field.name for field in dataclasses.fields(cls) if field.name not in _SKIPPED_FIELDS and field.init}
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise ValueError(f"{name} has no field(s) {unknown}; its constructor takes {sorted(allowed)}.")
    return cls(**{key: _decode(value) for key, value in fields.items()})


def registered() -> list[str]:
    """Names of every registered class (after importing jcnf's registering modules)."""
    _import_registering_modules()
    return sorted(_REGISTRY)
