"""The factorized Bernoulli baseline: its log-likelihood, class weighting, samples, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jcnf.baselines import FactorizedBernoulli, bernoulli_log_prob
from tests.conftest import assert_close


def test_bernoulli_log_prob_matches_the_formula_and_weights_positives():
    value = jnp.array([[1.0, 0.0, 1.0]])
    logits = jnp.array([[0.3, -1.2, 2.0]])
    p = jax.nn.sigmoid(logits)
    expected = jnp.log(p[0, 0]) + jnp.log(1 - p[0, 1]) + jnp.log(p[0, 2])
    # float32 logs of O(1) numbers: 1e-5.
    assert_close(bernoulli_log_prob(value, logits), [expected], atol=1e-5)
    weighted = 3.0 * (jnp.log(p[0, 0]) + jnp.log(p[0, 2])) + jnp.log(1 - p[0, 1])
    assert_close(bernoulli_log_prob(value, logits, 3.0), [weighted], atol=1e-5)


def test_module_log_prob_samples_and_errors():
    model = FactorizedBernoulli(features=4, blocks=1, hidden=4)
    context = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 2))
    value = (jax.random.uniform(jax.random.PRNGKey(1), (2, 8, 8, 1)) < 0.3).astype(jnp.float32)
    variables = model.init(jax.random.PRNGKey(2), value, context)
    log_prob = model.apply(variables, value, context)
    logits = model.apply(variables, context, method="logits")
    assert_close(log_prob, bernoulli_log_prob(value, logits), atol=1e-4)
    probs = model.apply(variables, context, method="probabilities")
    draw = jax.jit(jax.vmap(lambda key: model.apply(variables, key, context, method="sample")))
    draws = draw(jax.random.split(jax.random.PRNGKey(3), 400))
    assert set(np.unique(draws).tolist()) <= {0.0, 1.0}
    # 400 Bernoulli draws: the frequency's standard error is <= 0.025; 0.13 is > 5 of them.
    assert float(jnp.max(jnp.abs(draws.mean(0) - probs))) < 0.13
    with pytest.raises(ValueError, match="`value`"):
        model.apply(variables, value[..., :0], context)
    with pytest.raises(ValueError, match="`context`"):
        model.apply(variables, context[0], method="logits")
