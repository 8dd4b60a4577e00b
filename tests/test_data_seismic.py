"""Synthetic seismic sections and the loaders for users' own data."""

import sys

import numpy as np
import pytest

from jcnf.data import seismic


def test_generator_shapes_determinism_and_families():
    low = seismic.synthetic_seismic_images(0, 6, 32, "low")
    assert low.shape == (6, 32, 32, 1) and low.dtype == np.float32 and np.all(np.isfinite(low))
    np.testing.assert_array_equal(low, seismic.synthetic_seismic_images(0, 6, 32, "low"))
    assert seismic.synthetic_seismic_images(0, 2, (16, 24)).shape == (2, 16, 24, 1)
    # Layered: neighbours along a layer (across) correlate more than neighbours in depth.
    whitened = seismic.whiten(seismic.synthetic_seismic_images(1, 64, 32, "low"))[..., 0]
    across = np.mean(whitened[:, :, 1:] * whitened[:, :, :-1])
    down = np.mean(whitened[:, 1:, :] * whitened[:, :-1, :])
    assert across > down + 0.1
    # The two families differ: the high family has a lower-frequency wavelet, so depth neighbours
    # correlate more (a few hundred images make the difference far larger than sampling noise).
    high = seismic.whiten(seismic.synthetic_seismic_images(1, 64, 32, "high"))[..., 0]
    assert np.mean(high[:, 1:] * high[:, :-1]) > down + 0.02


def test_whiten_gives_zero_mean_unit_std():
    images = seismic.whiten(3.0 + 5.0 * np.random.default_rng(0).normal(size=(4, 8, 8, 1)))
    np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), 0.0, atol=1e-6)  # float32 sums of 64 values
    np.testing.assert_allclose(images.std(axis=(1, 2, 3)), 1.0, atol=1e-5)
    assert np.all(np.isfinite(seismic.whiten(np.ones((1, 4, 4, 1)))))
    with pytest.raises(ValueError, match=r"`images` must have shape \[N, height, width, channels\]"):
        seismic.whiten(np.zeros((4, 4)))


def test_generator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`family` must be one of"):
        seismic.synthetic_seismic_images(0, 1, 32, "mid")
    with pytest.raises(ValueError, match="`num` must be >= 1"):
        seismic.synthetic_seismic_images(0, 0, 32)
    with pytest.raises(ValueError, match="`num`"):
        seismic.synthetic_seismic_images(0, 2.0, 32)
    for size in ((32,), 3, (32, 2.0)):
        with pytest.raises(ValueError, match="`size`"):
            seismic.synthetic_seismic_images(0, 1, size)


def test_load_folder_of_sections_and_volumes(tmp_path):
    rng = np.random.default_rng(0)
    section = rng.normal(size=(16, 24)).astype(np.float32)
    volume = rng.normal(size=(3, 16, 24)).astype(np.float64)
    np.save(tmp_path / "a_section.npy", section)
    np.save(tmp_path / "b_volume.npy", volume)
    np.save(tmp_path / "c_channel.npy", section[..., None] * 2.0)
    (tmp_path / "notes.txt").write_text("ignored")
    images = seismic.load_seismic_folder(tmp_path, whitened=False)
    assert images.shape == (5, 16, 24, 1) and images.dtype == np.float32
    np.testing.assert_array_equal(images[0, ..., 0], section)  # sorted order: a, b (3 slices), c
    np.testing.assert_allclose(images[1:4, ..., 0], volume.astype(np.float32))
    patches = seismic.load_seismic_folder(tmp_path, patch_size=8)
    assert patches.shape == (5 * 2 * 3, 8, 8, 1)
    np.testing.assert_allclose(patches.std(axis=(1, 2, 3)), 1.0, atol=1e-5)  # whitened by default
    np.testing.assert_allclose(seismic.load_seismic_folder(tmp_path, patch_size=8, whitened=False)[1, ..., 0],
                               section[:8, 8:16])


def test_load_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="is not a folder"):
        seismic.load_seismic_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="holds no .npy files"):
        seismic.load_seismic_folder(tmp_path)
    np.save(tmp_path / "a.npy", np.zeros((8, 8)))
    np.save(tmp_path / "b.npy", np.zeros((8, 16)))
    with pytest.raises(ValueError, match="different shapes.*patch_size"):
        seismic.load_seismic_folder(tmp_path)
    with pytest.raises(ValueError, match="smaller than `patch_size`"):
        seismic.load_seismic_folder(tmp_path, patch_size=12)
    for patch_size in (0, (3, 3, 3), 2.5, (4, True)):
        with pytest.raises(ValueError, match="`patch_size` must be a positive int"):
            seismic.load_seismic_folder(tmp_path, patch_size=patch_size)
    np.save(tmp_path / "c.npy", np.zeros((2, 2, 8, 8)))
    with pytest.raises(ValueError, match=r"c.npy.*2D section.*got shape \(2, 2, 8, 8\)"):
        seismic.load_seismic_folder(tmp_path, patch_size=8)
    (tmp_path / "c.npy").unlink()
    bad = np.zeros((8, 8))
    bad[0, 0] = np.nan
    np.save(tmp_path / "d.npy", bad)
    with pytest.raises(ValueError, match="d.npy.*finite numbers.*1 non-finite"):
        seismic.load_seismic_folder(tmp_path, patch_size=8)


def test_segy_without_segyio_names_the_seismic_extra(tmp_path, monkeypatch):
    # None in sys.modules makes `import segyio` raise ImportError, as when it is not installed.
    monkeypatch.setitem(sys.modules, "segyio", None)
    with pytest.raises(ImportError, match=r"segyio.*`seismic` extra.*jcnf\[seismic\]"):
        seismic.load_segy(tmp_path / "line.sgy")
