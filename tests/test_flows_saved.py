"""Saved models: one directory each, loaded without pickle, the same model in a fresh process; bad input named."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _saved_models import tiny_models

import jcnf
from jcnf.flows import registry, saved
from tests._xla import subprocess_env

# 8 samples of 2 contexts, split by sample over the child's 8 devices.
NUM_SAMPLES, TEMPERATURE, DEVICES = 8, 0.7, 8

_CHILD = """
import sys
import jax
import numpy as np
import jcnf

root = sys.argv[1]
inputs = np.load(root + "/inputs.npz")
out = {}
for name in sys.argv[2:]:
    trained = jcnf.load_model(f"{root}/{name}")
    samples, log_prob = trained.sample_and_log_prob(jax.random.PRNGKey(7), inputs[name + "/context"],
                                                    int(inputs["num_samples"]), float(inputs[name + "/temperature"]))
    out[name + "/samples"], out[name + "/log_prob"] = np.asarray(samples), np.asarray(log_prob)
    # Distinct pieces of the samples across the devices: 1 when replicated or on one device.
    out[name + "/pieces"] = np.array(len({str(shard.index) for shard in samples.addressable_shards}))
out["modules"] = np.array(sorted(sys.modules))
np.savez(root + "/outputs.npz", **out)
"""


def _save(tmp_path, name, **options):
    tiny = tiny_models()[name]
    return jcnf.save_model(tmp_path / name, tiny.model, tiny.params, value_shape=tiny.value.shape[1:],
                           context_shape=tiny.context_shape, **options)


def test_every_registered_class_round_trips_in_a_fresh_process_and_samples_over_its_devices(tmp_path):
    models = tiny_models()
    assert sorted(models) == registry.registered()  # a newly registered class needs an entry in _saved_models
    inputs, expected = {"num_samples": np.array(NUM_SAMPLES)}, {}
    for name, tiny in models.items():
        _save(tmp_path, name, metadata={"note": name})
        trained = jcnf.TrainedModel(tiny.model, tiny.params, value_shape=tiny.value.shape[1:],
                                    context_shape=tiny.context_shape)
        inputs[name + "/context"] = np.asarray(tiny.context)
        # The Bernoulli baseline samples only at temperature 1.
        temperature = inputs[name + "/temperature"] = 1.0 if name == "FactorizedBernoulli" else TEMPERATURE
        # One compilation per model and process: the samples, and the log-density of each.
        samples, log_prob = trained.sample_and_log_prob(jax.random.PRNGKey(7), tiny.context, NUM_SAMPLES,
                                                        temperature)
        expected[name + "/samples"], expected[name + "/log_prob"] = np.asarray(samples), np.asarray(log_prob)
    np.savez(tmp_path / "inputs.npz", **inputs)
    done = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path), *models], env=subprocess_env(DEVICES),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = np.load(tmp_path / "outputs.npz")
    for name in models:
        # The same program on the same inputs, here on one device and there split over 8 (JAX's random bits do
        # not depend on the split): equal up to float32 rounding of a recompilation (1e-6).
        np.testing.assert_allclose(outputs[name + "/log_prob"], expected[name + "/log_prob"], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(outputs[name + "/samples"], expected[name + "/samples"], rtol=1e-6, atol=1e-6)
        assert outputs[name + "/samples"].shape == (NUM_SAMPLES,) + models[name].value.shape
        assert int(outputs[name + "/pieces"]) == DEVICES, name
        assert json.loads((tmp_path / name / "model.json").read_text())["metadata"] == {"note": name}
    # Loading imported no experiment or benchmark code.
    assert not any(module.startswith(("experiments", "benchmarks")) for module in outputs["modules"])


def test_the_record_names_the_class_fields_shapes_and_versions(tmp_path):
    path = _save(tmp_path, "SuperResolutionGlow")
    record = json.loads((path / "model.json").read_text())
    assert record["class"] == "SuperResolutionGlow"
    assert record["fields"]["levels"] == 1 and record["fields"]["skip"] == "backprojected"
    assert record["value_shape"] == [4, 4, 1] and record["context_shape"] == [2, 2, 1]
    assert record["format_version"] == saved.FORMAT_VERSION and record["jcnf_version"] == jcnf.__version__
    assert sorted(p.name for p in path.iterdir()) == ["arrays", "model.json"]


def test_standardization_and_bounds_are_saved(tmp_path):
    tiny = tiny_models()["ConditionalRealNVP"]
    standardization = jcnf.Standardization(value_loc=np.array([1.0, -2.0]), value_scale=np.array([2.0, 0.5]),
                                           context_loc=np.array([0.5, 0.0, 1.0]))
    bounds = (np.array([-9.0, -9.0]), np.array([9.0, 12.0]))
    trained = jcnf.TrainedModel(tiny.model, tiny.params, standardization=standardization, bounds=bounds)
    jcnf.save_model(tmp_path / "m", trained)
    loaded = jcnf.load_model(tmp_path / "m")
    for name, array in standardization.arrays().items():
        np.testing.assert_array_equal(getattr(loaded.standardization, name), array)
    assert loaded.standardization.context_scale is None
    np.testing.assert_array_equal(loaded.bounds[1], bounds[1])
    # The same arrays through the same program: equal to float32 rounding.
    np.testing.assert_allclose(loaded.log_prob(tiny.value, tiny.context), trained.log_prob(tiny.value, tiny.context),
                               rtol=1e-6)


def test_saving_again_replaces_the_model_but_never_other_files(tmp_path):
    _save(tmp_path, "ConditionalRealNVP", metadata={"run": 1})
    _save(tmp_path, "ConditionalRealNVP", metadata={"run": 2})
    assert jcnf.load_model(tmp_path / "ConditionalRealNVP").metadata == {"run": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ConditionalRealNVP"]
    (tmp_path / "ConditionalGlow").mkdir()
    (tmp_path / "ConditionalGlow" / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match=r"exists and is not a saved model"):
        _save(tmp_path, "ConditionalGlow")
    assert (tmp_path / "ConditionalGlow" / "notes.txt").read_text() == "keep"


def test_a_failed_save_leaves_no_partial_model_and_keeps_the_old_one(tmp_path, monkeypatch):
    _save(tmp_path, "ConditionalRealNVP", metadata={"run": 1})

    class Failing:
        def save(self, *args, **kwargs):
            raise OSError("disk full")

        def close(self):
            pass

    monkeypatch.setattr(saved, "_checkpointer", Failing)
    with pytest.raises(OSError, match="disk full"):
        _save(tmp_path, "ConditionalRealNVP", metadata={"run": 2})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ConditionalRealNVP"]
    assert jcnf.load_model(tmp_path / "ConditionalRealNVP").metadata == {"run": 1}


def _edit_record(path, **changes):
    record = json.loads((path / "model.json").read_text())
    for key, value in changes.items():
        if key == "fields":
            record["fields"].update(value)
        else:
            record[key] = value
    (path / "model.json").write_text(json.dumps(record))


def test_a_directory_without_a_model_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"holds no saved model: expected a directory with model\.json"):
        jcnf.load_model(tmp_path)


def test_a_newer_format_is_refused(tmp_path):
    path = _save(tmp_path, "ConditionalRealNVP")
    _edit_record(path, format_version=saved.FORMAT_VERSION + 1)
    with pytest.raises(ValueError, match=rf"format version {saved.FORMAT_VERSION + 1}, newer than .* upgrade jcnf"):
        jcnf.load_model(path)


def test_an_unknown_class_is_named_with_the_known_ones(tmp_path):
    path = _save(tmp_path, "ConditionalRealNVP")
    _edit_record(path, **{"class": "os.system"})
    with pytest.raises(ValueError, match=r"Unknown model class 'os.system'.*'ConditionalGlow'"):
        jcnf.load_model(path)


def test_an_unknown_field_is_named(tmp_path):
    path = _save(tmp_path, "ConditionalRealNVP")
    _edit_record(path, fields={"depth": 3})
    with pytest.raises(ValueError, match=r"ConditionalRealNVP has no field\(s\) \['depth'\]"):
        jcnf.load_model(path)


def test_parameters_that_do_not_match_the_fields_are_listed(tmp_path):
    path = _save(tmp_path, "ConditionalRealNVP")
    _edit_record(path, fields={"hidden": 6})
    with pytest.raises(ValueError, match=r"do not match the recorded model.*Shapes differ.*\(1, 4, 4\) in the saved "
                                         r"parameters vs \(1, 4, 6\)"):
        jcnf.load_model(path)
    _edit_record(path, fields={"hidden": 4, "blocks": 3})
    with pytest.raises(ValueError, match=r"do not match the recorded model.*Missing from the saved parameters "
                                         r"\(\d+\): last/"):
        jcnf.load_model(path)


def test_save_needs_the_context_shape_where_the_parameters_leave_it_open(tmp_path):
    tiny = tiny_models()["ConditionalGlow"]
    with pytest.raises(ValueError, match=r"`context_shape` .* is required for ConditionalGlow"):
        jcnf.save_model(tmp_path / "m", tiny.model, tiny.params)
    assert not any(tmp_path.iterdir())


def test_metadata_must_be_json(tmp_path):
    tiny = tiny_models()["ConditionalRealNVP"]
    with pytest.raises(ValueError, match=r"`metadata` must hold JSON values"):
        jcnf.save_model(tmp_path / "m", tiny.model, tiny.params, metadata={"array": jnp.ones(2)})


def test_fields_of_every_kind_survive_json():
    model = jcnf.ConditionalGlow(levels=2, blocks=3, hidden=8, dtype=jnp.bfloat16, schedule="unrolled")
    fields = json.loads(json.dumps(registry.model_fields(model)))
    assert fields["dtype"] == {"dtype": "bfloat16"}
    rebuilt = registry.build_model("ConditionalGlow", fields)
    assert rebuilt.dtype == jnp.bfloat16 and rebuilt.schedule == "unrolled" and rebuilt.blocks == 3
    corrected = tiny_models()["LatentCorrectedFlow"].model
    nested = registry.build_model("LatentCorrectedFlow", json.loads(json.dumps(registry.model_fields(corrected))))
    assert registry.model_fields(nested) == registry.model_fields(corrected)
    with pytest.raises(ValueError, match=r"`model` must be an instance of a registered jcnf class"):
        registry.model_fields(jcnf.flows.ValueToLatent)


def test_a_relative_path_saves_and_loads(tmp_path, monkeypatch):
    # Orbax accepts only absolute paths; `make demo` passes relative ones such as out/demo/model.
    monkeypatch.chdir(tmp_path)
    tiny = tiny_models()["ConditionalRealNVP"]
    jcnf.save_model("relative/model", tiny.model, tiny.params, context_shape=tiny.context_shape)
    loaded = jcnf.load_model("relative/model")
    np.testing.assert_array_equal(loaded.log_prob(tiny.value, tiny.context),
                                  jcnf.TrainedModel(tiny.model, tiny.params).log_prob(tiny.value, tiny.context))
