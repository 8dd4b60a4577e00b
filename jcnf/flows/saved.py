"""A trained model as one directory: `save_model` and `load_model`, without pickle.

    <path>/model.json   the class (a name jcnf registered), its constructor fields,
                        the value and context shapes it was trained on, which
                        standardization and bounds it has, metadata, the jcnf
                        version and the format version
    <path>/arrays/      orbax: {"params": ..., "standardization": ..., "bounds": ...}

Loading reads the JSON, builds the named class from its fields (looked up
in `jcnf.flows.registry`, never imported by a name read from the file),
checks the stored parameters against what that model's `init` makes for the
recorded shapes, and restores them with orbax. A save writes into a
temporary directory beside `path` and renames it when complete, so a failed
save leaves no half-written model.

Orbax refuses zero-size arrays, and every jcnf flow carries one (the shape
marker [0, *event_shape]); it is stored as a scalar placeholder and rebuilt
from the model's own parameter shapes on loading.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import uuid
from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from jcnf._trees import shape_differences
from jcnf.flows.registry import build_model, model_fields
from jcnf.flows.trained import Standardization, TrainedModel

FORMAT_VERSION = 1
_JSON = "model.json"
_ARRAYS = "arrays"


def _jcnf_version() -> str:
    try:
        return importlib.metadata.version("jcnf")
    except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def _host_array(x: Any, where: str) -> np.ndarray:
    """A numpy copy of one leaf; a replicated multi-process array gives its local copy."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        if not x.is_fully_replicated:
            raise ValueError(f"`{where}` is split over processes; gather it to every process first "
                             f"(`jax.experimental.multihost_utils.process_allgather`).")
        return np.asarray(x.addressable_data(0))
    return np.asarray(x)


def _check_params_match(stored: Any, expected: Any, what: str) -> None:
    """Raises a ValueError listing how the stored parameters differ from those the recorded fields make."""
    # A zero-size leaf is stored as a scalar placeholder.
    placeholders = jax.tree.map(lambda x: jax.ShapeDtypeStruct(() if 0 in x.shape else x.shape, x.dtype), expected)
    differences = shape_differences(stored, placeholders, "the saved parameters", "the model")
    if differences:
        raise ValueError(" ".join([f"The parameters in {what} do not match the recorded model (its class, fields "
                                   f"and shapes).", *differences]))


def _expected_params(model: Any, value_shape: tuple[int, ...], context_shape: tuple[int, ...]) -> Any:
    """Shapes and dtypes of the parameters `model.init` makes for one value and context of these shapes."""
    value = jax.ShapeDtypeStruct((1,) + tuple(value_shape), jnp.float32)
    context = jax.ShapeDtypeStruct((1,) + tuple(context_shape), jnp.float32)
    return jax.eval_shape(model.init, jax.random.PRNGKey(0), value, context)["params"]


def _checkpointer():
    import orbax.checkpoint as ocp  # imported here: `import jcnf` stays light

    # One process writes and reads: no barrier with the others of a multi-process job.
    here = jax.process_index()
    options = ocp.options.MultiprocessingOptions(primary_host=here, active_processes={here})
    return ocp.StandardCheckpointer(multiprocessing_options=options)


def _absolute(path: str | os.PathLike) -> epath.Path:
    """`path` as an absolute `epath.Path` (orbax refuses relative ones); a remote one (`gs://...`) as given."""
    path = epath.Path(path)
    return path if path.is_absolute() else path.absolute()


def save_model(path: str | os.PathLike, model_or_trained: Any, params: Any = None, *,
               standardization: Optional[Standardization] = None, bounds: Optional[Sequence[Any]] = None,
               metadata: Optional[Mapping[str, Any]] = None, value_shape: Optional[Sequence[int]] = None,
               context_shape: Optional[Sequence[int]] = None) -> epath.Path:
    """Saves a trained model as the directory `path` (replacing a model saved there before, nothing else).

    Call it on one process of a multi-process job (process 0): it writes
    without waiting for the others. Parameters replicated over the processes
    are taken from the local copy.

    Args:
      path: the model's directory (local, or remote such as `gs://bucket/model`).
      model_or_trained: a `TrainedModel`, or the model (a registered jcnf flow or baseline) with `params`.
      params: the model's parameters (the tree under "params"); only with a model.
      standardization: the `Standardization` it was trained in (only with a model,
        as the next four: a `TrainedModel` carries its own).
      bounds: (lower, upper) of the value, as in `TrainedModel`.
      metadata: JSON-able notes saved with it.
      value_shape: one value's shape; read from the parameters when not given.
      context_shape: one context's shape; required unless the parameters fix it
        (vector-context RealNVPs). Loading checks the parameters against the
        model's `init` on these shapes.

    Returns:
      The model's directory.
    """
    if isinstance(model_or_trained, TrainedModel):
        given = {"params": params, "standardization": standardization, "bounds": bounds, "metadata": metadata,
                 "value_shape": value_shape, "context_shape": context_shape}
        extra = [name for name, value in given.items() if value is not None]
        if extra:
            raise ValueError(f"{extra} must not be given with a TrainedModel, which carries its own.")
        trained = model_or_trained
    else:
        if params is None:
            raise ValueError("`params` (the model's parameters, the tree under 'params') is required with a model.")
        trained = TrainedModel(model_or_trained, params, standardization=standardization, bounds=bounds,
                               metadata=metadata, value_shape=value_shape, context_shape=context_shape)
    if trained.context_shape is None:
        raise ValueError(f"`context_shape` (one context's shape, e.g. (height, width, channels)) is required for "
                         f"{type(trained.model).__name__}: its parameters do not fix it.")
    standardizing = {} if trained.standardization is None else trained.standardization.arrays()
    record = {"format_version": FORMAT_VERSION, "jcnf_version": _jcnf_version(),
              "class": type(trained.model).__name__, "fields": model_fields(trained.model),
              "value_shape": list(trained.value_shape), "context_shape": list(trained.context_shape),
              "standardization": sorted(standardizing), "bounds": trained.bounds is not None,
              "metadata": trained.metadata}
    try:
        text = json.dumps(record, indent=2, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"`metadata` must hold JSON values (numbers, strings, lists, dicts); {error}.") from None
    arrays = {"params": jax.tree_util.tree_map_with_path(
        lambda where, x: _host_array(x, "params" + jax.tree_util.keystr(where)), trained.params)}
    # Orbax refuses zero-size arrays: their shapes are rebuilt from the model on loading.
    arrays["params"] = jax.tree.map(lambda x: np.zeros((), x.dtype) if x.size == 0 else x, arrays["params"])
    if standardizing:
        arrays["standardization"] = standardizing
    if trained.bounds is not None:
        arrays["bounds"] = {"lower": trained.bounds[0], "upper": trained.bounds[1]}

    target = _absolute(path)
    if target.exists() and not (target / _JSON).exists() and (not target.is_dir() or any(target.iterdir())):
        # Only a model saved here before is replaced: never a user's other files.
        raise ValueError(f"`path` {os.fspath(target)} exists and is not a saved model; give a new or empty "
                         f"directory, or a saved model's to replace it.")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        partial.mkdir()
        checkpointer = _checkpointer()
        try:
            checkpointer.save(partial / _ARRAYS, arrays)
            checkpointer.wait_until_finished()
        finally:
            checkpointer.close()
        (partial / _JSON).write_text(text)
        if target.exists():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            target.rename(old)
            partial.rename(target)
            old.rmtree()
        else:
            partial.rename(target)
    finally:
        if partial.exists():
            partial.rmtree()
    return target


def _read_record(path: epath.Path) -> dict:
    if not (path / _JSON).exists():
        raise ValueError(f"`path` {os.fspath(path)} holds no saved model: expected a directory with {_JSON} and "
                         f"{_ARRAYS}/ written by jcnf.save_model.")
    try:
        record = json.loads((path / _JSON).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{os.fspath(path / _JSON)} is not valid JSON ({error}).") from None
    version = record.get("format_version") if isinstance(record, dict) else None
    if not isinstance(version, int):
        raise ValueError(f"{os.fspath(path / _JSON)} has no integer format_version; not a model saved by jcnf.")
    if version > FORMAT_VERSION:
        raise ValueError(f"The model at {os.fspath(path)} has format version {version}, newer than this jcnf "
                         f"({_jcnf_version()}) reads (up to {FORMAT_VERSION}); it was saved by jcnf "
                         f"{record.get('jcnf_version')}: upgrade jcnf to load it.")
    for key in ("class", "fields", "value_shape", "context_shape"):
        if key not in record:
            raise ValueError(f"{os.fspath(path / _JSON)} lacks the entry {key!r}.")
    return record


def load_model(path: str | os.PathLike) -> TrainedModel:
    """Loads a model saved by `save_model`.

    Args:
      path: the model's directory.

    Returns:
      A `TrainedModel` with the saved parameters, standardization, bounds and metadata.

    Raises:
      ValueError: `path` holds no model; its format is newer than this jcnf;
        it names a class jcnf does not register or fields that class does not
        take; or the parameters do not match the recorded class, fields and shapes.
    """
    path = _absolute(path)
    record = _read_record(path)
    if not isinstance(record["fields"], dict):
        raise ValueError(f"The fields of {record['class']} in {os.fspath(path / _JSON)} must be a JSON object.")
    model = build_model(record["class"], record["fields"])
    value_shape, context_shape = tuple(record["value_shape"]), tuple(record["context_shape"])
    try:
        expected = _expected_params(model, value_shape, context_shape)
    except (TypeError, ValueError) as error:
        raise ValueError(f"The recorded {record['class']} fields {record['fields']} do not make a model for values "
                         f"of shape {value_shape} and contexts of shape {context_shape}: {error}") from None
    checkpointer = _checkpointer()
    try:
        stored = checkpointer.metadata(path / _ARRAYS).item_metadata.tree
        _check_params_match(stored.get("params", {}), expected, os.fspath(path))
        names = record.get("standardization") or []
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = {"params": jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(() if 0 in x.shape else x.shape, x.dtype, sharding=device), expected)}
        for group in ("standardization", "bounds"):
            if group in stored:
                abstract[group] = jax.tree.map(
                    lambda x: jax.ShapeDtypeStruct(tuple(x.shape), x.dtype, sharding=device), dict(stored[group]),
                    is_leaf=lambda x: hasattr(x, "shape"))
        restored = checkpointer.restore(path / _ARRAYS, abstract)
    finally:
        checkpointer.close()
    # Host copies, placed on the default device at first use and not committed to one (a sharded sample
    # replicates them over its mesh).
    restored = jax.device_get(restored)
    params = jax.tree.map(lambda want, got: jnp.zeros(want.shape, want.dtype) if 0 in want.shape else jnp.asarray(got),
                          expected, restored["params"])
    standardization = (Standardization(**{name: np.asarray(restored["standardization"][name]) for name in names})
                       if names else None)
    bounds = None
    if record.get("bounds"):
        bounds = (np.asarray(restored["bounds"]["lower"]), np.asarray(restored["bounds"]["upper"]))
    return TrainedModel(model, params, standardization=standardization, bounds=bounds,
                        metadata=record.get("metadata") or {}, value_shape=value_shape, context_shape=context_shape)
