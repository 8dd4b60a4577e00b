"""Every experiment's `apply` command on a tiny saved model: what it writes, and its named bad input.

The models are freshly initialized and tiny (one level, one block, a few
channels): the commands' plumbing (reading inputs, tiling, sampling,
refining, writing) is under test, not the quality of a trained model.
"""

import json

import jax
import numpy as np
import pytest
from _saved_models import random_params
from PIL import Image

import jcnf
from experiments import demo, rosenbrock, seismic, superres, vessels
from experiments.configs import rosenbrock as rosenbrock_configs
from experiments.configs import seismic as seismic_configs


def _save_run(run, model, value_shape, context_shape, config=None):
    params = random_params(model, value_shape, context_shape, 0.1)
    jcnf.save_model(run / "model", model, params, context_shape=context_shape)
    if config is not None:
        (run / "config.json").write_text(json.dumps(config.to_dict()))
    return run


def _png(path, array):
    Image.fromarray(np.asarray(array, np.uint8)).save(path)
    return path


def _image_size(path):
    with Image.open(path) as image:
        return image.size[::-1]  # (height, width)


def test_demo_samples_the_flow_at_each_radius(tmp_path):
    run = _save_run(tmp_path / "run", jcnf.ConditionalRealNVP(blocks=2, hidden=4), (2,), (1,))
    np.save(tmp_path / "radii.npy", np.array([1.0, 2.0, 3.0]))
    result = demo.main(["apply", "--run", str(run), "--input", str(tmp_path / "radii.npy"), "--output",
                        str(tmp_path / "out"), "--samples", "5"])
    samples = np.load(tmp_path / "out" / "samples.npy")
    assert samples.shape == (5, 3, 2) and np.all(np.isfinite(samples))
    assert result["written"] == [str(tmp_path / "out" / "samples.npy")] and result["contexts"] == [1.0, 2.0, 3.0]


def test_rosenbrock_posterior_and_its_refinement(tmp_path):
    config = rosenbrock_configs.get_config("smoke")
    run = _save_run(tmp_path / "run", jcnf.ConditionalRealNVP(blocks=2, hidden=4), (2,), (2,), config)
    np.save(tmp_path / "y.npy", np.array([2.0, 3.5], np.float32))
    out = tmp_path / "out"
    result = rosenbrock.main(["apply", "--run", str(run), "--input", str(tmp_path / "y.npy"), "--output", str(out),
                              "--samples", "50", "--refine", "2"])
    for prefix in ("", "refined_"):
        samples, mean = np.load(out / f"{prefix}samples.npy"), np.load(out / f"{prefix}mean.npy")
        assert samples.shape == (50, 2) and np.all(np.isfinite(samples))
        np.testing.assert_allclose(mean, samples.mean(0), rtol=1e-6)  # the file holds the samples' mean
        np.testing.assert_allclose(np.load(out / f"{prefix}std.npy"), samples.std(0), rtol=1e-6)
    refined = jcnf.load_model(out / "refined_model")
    assert refined.context_shape == (2,) and set(result) >= {"amortized", "refined", "written"}
    with pytest.raises(ValueError, match=r"`--input` must hold an observation y of shape \(2,\); got shape \(3,\)"):
        np.save(tmp_path / "bad.npy", np.zeros(3))
        rosenbrock.main(["apply", "--run", str(run), "--input", str(tmp_path / "bad.npy"), "--output", str(out)])


def test_seismic_posterior_of_a_new_observation(tmp_path):
    config = seismic_configs.get_config("smoke")
    size = config.data.size
    model = jcnf.ConditionalGlow(levels=1, blocks=1, hidden=4, context_features=4, encoder_blocks=1)
    run = _save_run(tmp_path / "run", model, (size, size, 1), (size, size, 1), config)
    operator = seismic.seismic_operator(config)
    np.save(tmp_path / "y.npy", np.asarray(jax.random.normal(jax.random.PRNGKey(3), operator.output_shape)))
    out = tmp_path / "out"
    # Refinement runs the code of the Rosenbrock test above (a Glow's reverse-KL step compiles for long).
    seismic.main(["apply", "--run", str(run), "--input", str(tmp_path / "y.npy"), "--output", str(out),
                  "--samples", "4"])
    assert np.load(out / "samples.npy").shape == (4, size, size, 1)
    assert np.all(np.isfinite(np.load(out / "std.npy")))
    assert _image_size(out / "mean.png") == (size, size) and _image_size(out / "std.png") == (size, size)
    with pytest.raises(ValueError, match=r"`--input` must hold an observation y \(the operator's output\) of shape"):
        np.save(tmp_path / "bad.npy", np.zeros((size, size, 1)))
        seismic.main(["apply", "--run", str(run), "--input", str(tmp_path / "bad.npy"), "--output", str(out)])


def test_superres_tiles_a_photograph_into_images_factor_times_larger(tmp_path):
    model = jcnf.SuperResolutionGlow(levels=1, blocks=1, hidden=4, context_features=4, encoder_blocks=1)
    run = _save_run(tmp_path / "run", model, (8, 8, 3), (4, 4, 3))
    photo = _png(tmp_path / "photo.png", np.random.default_rng(0).integers(0, 256, (10, 13, 3)))
    out = tmp_path / "out"
    # Tiles of 4 input pixels: 3 x 4 tiles in batches of 4, the last batch filled up.
    result = superres.main(["apply", "--run", str(run), "--input", str(photo), "--output", str(out),
                            "--samples", "2", "--temperature", "1.0", "--tile", "4"])
    assert result["tiles"] == 12 and result["output_size"] == [20, 26] and result["finite"]
    for name in ("mode_T0.png", "sample_00.png", "sample_01.png", "std.png"):
        assert _image_size(out / name) == (20, 26)
    std = np.load(out / "std.npy")
    assert std.shape == (20, 26, 3) and np.all(np.isfinite(std)) and std.max() > 0
    # A photograph smaller than the flow's patches is padded to what its levels need.
    tiny = _png(tmp_path / "tiny.png", np.full((3, 3, 3), 128))
    small = superres.main(["apply", "--model", str(run / "model"), "--input", str(tiny), "--output",
                           str(tmp_path / "small"), "--samples", "1", "--temperature", "0.5"])
    assert small["output_size"] == [6, 6] and small["finite"]
    assert _image_size(tmp_path / "small" / "mode_T0.png") == (6, 6)
    grey = _png(tmp_path / "grey.png", np.zeros((8, 8)))
    with pytest.raises(ValueError, match=r"`--input` must be a 3-channel image.*got 1 channel"):
        superres.main(["apply", "--run", str(run), "--input", str(grey), "--output", str(out)])


def test_vessels_segments_a_fundus_photograph(tmp_path):
    model = jcnf.ConditionalGlow(levels=1, blocks=1, hidden=4, context_features=4, encoder_blocks=1,
                                 full_resolution_context=True)
    run = _save_run(tmp_path / "run", model, (8, 8, 1), (8, 8, 2))
    rows, columns = np.mgrid[:24, :30]
    disc = (rows - 12) ** 2 + (columns - 15) ** 2 < 100  # a bright field of view on a black surround
    photo = _png(tmp_path / "fundus.png", np.where(disc[..., None], [180, 90, 40], 0))
    out = tmp_path / "out"
    vessels.main(["apply", "--run", str(run), "--input", str(photo), "--output", str(out), "--samples", "3",
                  "--size", "12"])
    probability = np.load(out / "probability.npy")
    assert probability.shape == (12, 15) and np.all((probability >= 0) & (probability <= 1))
    assert _image_size(out / "sample_02.png") == (12, 15) and np.load(out / "std.npy").shape == (12, 15, 1)
    assert probability[0, 0] == 0  # outside the field of view


def test_a_run_without_a_model_is_named(tmp_path):
    np.save(tmp_path / "y.npy", np.zeros(2))
    with pytest.raises(ValueError, match=r"holds no saved model"):
        rosenbrock.main(["apply", "--run", str(tmp_path), "--input", str(tmp_path / "y.npy"), "--output",
                         str(tmp_path / "out")])
