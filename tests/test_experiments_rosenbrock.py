"""Tests for the 2D toy problem's operator of experiments.rosenbrock."""

import jax
import numpy as np

from experiments.rosenbrock import paper_toy_operator, rosenbrock_operator


def test_rosenbrock_operator_has_unit_spectral_norm_and_is_well_conditioned():
    operator = rosenbrock_operator(jax.random.PRNGKey(16))
    matrix = np.asarray(operator.params["matrix"], np.float64)
    assert operator.input_shape == operator.output_shape == (2,)
    np.testing.assert_allclose(np.linalg.norm(matrix, 2), 1.0, rtol=1e-6)  # float32 division.
    # 3 I dominates randn(2, 2) for this key: the matrix is well conditioned.
    assert np.linalg.cond(matrix) < 3.0


def test_paper_toy_operator_is_fixed():
    first, second = paper_toy_operator(), paper_toy_operator()
    np.testing.assert_array_equal(first.params["matrix"], second.params["matrix"])
    np.testing.assert_array_equal(first.params["matrix"],
                                  rosenbrock_operator(jax.random.PRNGKey(2021)).params["matrix"])
    np.testing.assert_allclose(np.linalg.norm(np.asarray(first.params["matrix"], np.float64), 2), 1.0, rtol=1e-6)
