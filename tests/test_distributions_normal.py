"""jcnf.distributions.normal: the standard-normal log-density against scipy, summed over event axes."""

import numpy as np
import pytest
from scipy.stats import norm

from jcnf.distributions import standard_normal_log_prob

pytestmark = pytest.mark.strict_dtypes


def test_matches_scipy_summed_over_the_event_axes():
    z = np.random.default_rng(0).normal(size=(3, 4, 5)).astype(np.float32)
    # float32 sums of 20 terms of order 1: 1e-5 relative is a few ulps per term.
    np.testing.assert_allclose(standard_normal_log_prob(z, 2), norm.logpdf(z).sum(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(standard_normal_log_prob(z, 1), norm.logpdf(z).sum(axis=2), rtol=1e-5)
    assert standard_normal_log_prob(z, 0).shape == (3, 4, 5)
