"""jcnf.flows.push: latents through a flow give its inverse and the flow's own log-density."""

import _train_worker as worker
import jax
import numpy as np
import pytest

import jcnf
from jcnf.flows import push_latents

pytestmark = pytest.mark.strict_dtypes


def test_push_latents_is_the_inverse_with_the_flows_log_density():
    model = jcnf.ConditionalRealNVP(**worker.MODEL_KWARGS)
    data = worker.tiny_problem(16)
    variables = model.init(jax.random.PRNGKey(0), data["value"], data["context"])
    z = jax.random.normal(jax.random.PRNGKey(1), (16, 2))
    value, log_q = push_latents(model, variables, z, data["context"])
    assert value.shape == (16, 2) and log_q.shape == (16,)
    np.testing.assert_array_equal(value, model.apply(variables, z, data["context"], method="inverse"))
    # The same density scored from the value side: equal up to the float32 round trip value -> z.
    np.testing.assert_allclose(log_q, model.apply(variables, value, data["context"], method="log_prob"),
                               rtol=1e-5, atol=1e-5)
