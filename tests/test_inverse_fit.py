"""fit_reverse_kl recovers a closed-form linear-Gaussian posterior, from scratch and preconditioned."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jcnf
from jcnf import inverse

# y = A x + eps, eps ~ N(0, 0.5^2 I), x ~ N(m, C): the posterior is Gaussian and known in closed form.
A = np.array([[1.0, 0.4], [-0.3, 0.8]], np.float32)
PRIOR_MEAN = np.array([0.5, -1.0], np.float32)
PRIOR_COV = np.array([[1.0, 0.6], [0.6, 1.5]], np.float32)
NOISE_STD = 0.5
Y_OBS = np.array([1.0, -0.5], np.float32)


def log_prior(x):
    return inverse.gaussian_log_prob(x, PRIOR_MEAN, PRIOR_COV)


def log_evidence_of_objective():
    """Log of the integral of exp(posterior_log_density): N(y; A m, A C A^T + s^2 I) (2 pi s^2)^(m/2).

    posterior_log_density drops the likelihood's normalizer, so its integral
    is the evidence times (2 pi s^2)^(m/2); objective + this = KL(q || posterior).
    """
    data_cov = A @ PRIOR_COV @ A.T + NOISE_STD ** 2 * np.eye(2)
    residual = Y_OBS - A @ PRIOR_MEAN
    log_evidence = -0.5 * (residual @ np.linalg.solve(data_cov, residual) + np.linalg.slogdet(data_cov)[1]
                           + 2 * math.log(2 * math.pi))
    return log_evidence + math.log(2 * math.pi * NOISE_STD ** 2)


@pytest.fixture(scope="module")
def problem():
    model = jcnf.ConditionalRealNVP(blocks=2, hidden=16)
    operator = inverse.dense(A)
    mean, cov = inverse.linear_gaussian_posterior(operator, Y_OBS, NOISE_STD, PRIOR_MEAN, PRIOR_COV)
    # The amortized flow: q(x | y) on low-fidelity pairs of a different operator (denoising, noise 0.3).
    rng = np.random.default_rng(0)
    x = (PRIOR_MEAN + rng.normal(size=(2048, 2)) @ np.linalg.cholesky(PRIOR_COV).T).astype(np.float32)
    y = (x + 0.3 * rng.normal(size=x.shape)).astype(np.float32)
    low = jcnf.train.fit(model, {"value": x, "context": y}, steps=300, batch_size=64, progress=False,
                         optimizer=jcnf.train.default_optimizer(3e-3))
    return model, operator, np.asarray(mean), np.asarray(cov), low.params["flow"]


def fit(model, operator, params, steps, **kwargs):
    return inverse.fit_reverse_kl(model, params, Y_OBS, operator, NOISE_STD, log_prior, steps=steps,
                                  num_samples=64, optimizer=jcnf.train.default_optimizer(3e-3, total_steps=steps),
                                  eval_samples=2048, eval_every=steps // 4, progress=False, **kwargs)


def check_posterior(model, params, mean, cov):
    samples = model.apply({"params": params}, jax.random.PRNGKey(7), jnp.broadcast_to(Y_OBS, (16384, 2)),
                          method="sample")
    samples = np.asarray(samples, np.float64)
    # Posterior std is 0.42 and 0.50: 0.05 is a tenth of a std; the Monte-Carlo error of the
    # mean of 16384 samples is 0.004 and of the covariance entries about 0.002.
    np.testing.assert_allclose(samples.mean(0), mean, atol=0.05)
    np.testing.assert_allclose(np.cov(samples.T), cov, atol=0.03)


def check_kl(result):
    # objective + log evidence = KL(q || posterior) >= 0 (up to the Monte-Carlo error of 2048
    # latents, ~0.003 here); a Gaussian is exactly representable, so the fitted KL is small.
    kl = result.objective_history[-1, 1] + log_evidence_of_objective()
    assert -0.01 < kl < 0.02


def test_recovers_linear_gaussian_posterior_from_scratch_with_checkpoints(problem, tmp_path):
    model, operator, mean, cov, _ = problem
    params = model.init(jax.random.PRNGKey(1), jax.random.normal(jax.random.PRNGKey(2), (64, 2)),
                        jnp.broadcast_to(Y_OBS, (64, 2)))["params"]
    files = dict(checkpoint_dir=tmp_path / "ckpt", checkpoint_every=300, metrics_path=tmp_path / "metrics.jsonl",
                 log_every=100)
    result = fit(model, operator, params, 600, **files)
    check_posterior(model, result.params, mean, cov)
    check_kl(result)
    assert result.objective_history[0, 0] == 0 and result.objective_history[-1, 0] == 600
    assert result.loss_history.shape == (6, 2) and np.all(np.isfinite(result.loss_history))
    # Checkpoints and metrics go through the training engine.
    assert sorted(int(p.name) for p in (tmp_path / "ckpt").iterdir() if p.name.isdigit()) == [300, 600]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 6 + 4  # losses, evaluations
    # The same call again resumes at step 600 from the checkpoint: nothing is trained twice.
    again = fit(model, operator, params, 600, **files)
    jax.tree.map(np.testing.assert_array_equal, again.params, result.params)


def test_recovers_linear_gaussian_posterior_preconditioned(problem):
    model, operator, mean, cov, amortized = problem
    before = jax.tree.map(np.array, amortized)
    params = inverse.precondition(amortized)
    result = fit(model, operator, params, 200)
    check_posterior(model, result.params, mean, cov)
    check_kl(result)
    # The amortized flow still describes a different problem (denoising): it starts worse.
    assert result.objective_history[0, 1] > result.objective_history[-1, 1] + 0.05
    # The train step donates its state: neither the caller's params nor the amortized flow
    # may be changed or deleted by training.
    for tree in (params, amortized):
        jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, tree), before)


def test_bad_input_raises_clear_errors(problem):
    model, operator, _, _, amortized = problem
    def call(params=amortized, y_obs=Y_OBS, noise_std=NOISE_STD, **kwargs):
        return inverse.fit_reverse_kl(model, params, y_obs, operator, noise_std, log_prior, progress=False,
                                      **{"steps": 2, **kwargs})

    with pytest.raises(ValueError, match="`steps`"):
        call(steps=0)
    with pytest.raises(ValueError, match="`steps`"):
        call(steps=True)
    with pytest.raises(ValueError, match="`num_samples`"):
        call(num_samples=8.0)
    with pytest.raises(ValueError, match="`eval_samples`"):
        call(eval_samples=-1)
    with pytest.raises(ValueError, match="`noise_std`"):
        call(noise_std=0.0)
    with pytest.raises(ValueError, match=r"`y_obs`.*\[2\]"):
        call(y_obs=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="`context`.*\\[1, ...\\]"):
        call(context=np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="num_latents"):
        call(num_samples=8, num_latents=4)
    with pytest.raises(ValueError, match="shape_marker"):
        call(params={"dense": np.zeros(2)})
    # A step built earlier fixes the problem it was compiled for, its batch and its optimizer.
    step = inverse.posterior_step(model, operator, NOISE_STD, log_prior, num_samples=8)
    with pytest.raises(ValueError, match="`num_samples` is fixed by `step`"):
        call(step=step, num_samples=8)
    with pytest.raises(ValueError, match="`learning_rate` is fixed by `step`"):
        call(step=step, learning_rate=1e-2)
    with pytest.raises(ValueError, match="`noise_std`.*differs"):
        call(step=step, noise_std=2 * NOISE_STD)
    with pytest.raises(ValueError, match="another `log_prior`"):
        inverse.fit_reverse_kl(model, amortized, Y_OBS, operator, NOISE_STD, lambda x: log_prior(x), steps=2,
                               step=step, progress=False)
    with pytest.raises(ValueError, match="`forward_op` must be a LinearOperator"):
        inverse.fit_reverse_kl(model, amortized, Y_OBS, operator.apply, NOISE_STD, log_prior, steps=2, step=step,
                               progress=False)


def test_fits_with_one_step_compile_once_and_take_the_new_observation():
    model = jcnf.ConditionalRealNVP(blocks=1, hidden=8)
    operator = inverse.dense(A)
    traces = []

    def counting_log_prior(x):
        traces.append(x.shape)  # Python runs once per trace, never in a compiled call
        return log_prior(x)

    def init(seed):
        rng = jax.random.PRNGKey(seed)
        return model.init(rng, jax.random.normal(rng, (8, 2)), jnp.broadcast_to(Y_OBS, (8, 2)))["params"]

    def run(y_obs, params, seed, step, prior=counting_log_prior):
        return inverse.fit_reverse_kl(model, params, y_obs, operator, NOISE_STD, prior, steps=4, num_latents=16,
                                      eval_samples=16, eval_every=2, seed=seed, progress=False, step=step)

    step = inverse.posterior_step(model, operator, NOISE_STD, counting_log_prior, num_samples=8)
    first = run(Y_OBS, init(0), seed=0, step=step)
    traced = len(traces)
    assert traced > 0
    other_y = np.array([-2.0, 1.5], np.float32)
    second = run(other_y, init(1), seed=1, step=step)
    # A new observation (and context), starting point and seed of the same shapes: no new trace.
    assert len(traces) == traced
    assert not np.allclose(first.loss_history, second.loss_history)

    # The kept step used other_y, not a baked-in Y_OBS: a fresh step (for a fresh prior object)
    # compiles anew with the same inputs, which must give the same run. Only XLA's reassociation
    # can differ between two compilations of one program: float32 rounding, hence 1e-5.
    fresh_prior = lambda x: counting_log_prior(x)  # noqa: E731
    fresh = run(other_y, init(1), seed=1, prior=fresh_prior,
                step=inverse.posterior_step(model, operator, NOISE_STD, fresh_prior, num_samples=8))
    assert len(traces) > traced
    np.testing.assert_allclose(fresh.loss_history, second.loss_history, rtol=1e-5)
    np.testing.assert_allclose(fresh.objective_history, second.objective_history, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), fresh.params, second.params)
    # Without `step`, a call builds and compiles its own: the same call traces again.
    traced = len(traces)
    inverse.fit_reverse_kl(model, init(1), other_y, operator, NOISE_STD, counting_log_prior, steps=4,
                           num_samples=8, num_latents=16, eval_samples=16, eval_every=2, seed=1, progress=False)
    assert len(traces) > traced


def test_one_step_takes_each_operator_as_it_is_now():
    model = jcnf.ConditionalRealNVP(blocks=1, hidden=8)
    rng = jax.random.PRNGKey(0)
    params = model.init(rng, jax.random.normal(rng, (8, 2)), jnp.broadcast_to(Y_OBS, (8, 2)))["params"]
    operator = inverse.dense(A)
    steps = {noise_std: inverse.posterior_step(model, operator, noise_std, log_prior, num_samples=8)
             for noise_std in (NOISE_STD, 2 * NOISE_STD)}

    def run(operator, noise_std, step=None):
        options = dict(num_samples=8) if step is None else dict(step=step)
        return inverse.fit_reverse_kl(model, params, Y_OBS, operator, noise_std, log_prior, steps=3,
                                      num_latents=16, progress=False, **options).loss_history

    at_04, at_08 = run(operator, NOISE_STD, steps[NOISE_STD]), run(operator, 2 * NOISE_STD, steps[2 * NOISE_STD])
    # Another noise level is another step: it matches a fresh operator's run with a step of its own.
    np.testing.assert_allclose(at_08, run(inverse.dense(A), 2 * NOISE_STD), rtol=1e-5)
    assert not np.allclose(at_04, at_08)
    # The operator's arrays are inputs of the kept step, not constants: changed in place, they count,
    # and so does another operator of the same kind.
    operator.params["matrix"] = jnp.asarray(A) * 2.0
    np.testing.assert_allclose(run(operator, NOISE_STD, steps[NOISE_STD]),
                               run(inverse.dense(np.asarray(A) * 2.0), NOISE_STD), rtol=1e-5)
    np.testing.assert_allclose(run(inverse.dense(np.asarray(A) * 2.0), NOISE_STD, steps[NOISE_STD]),
                               run(inverse.dense(np.asarray(A) * 2.0), NOISE_STD), rtol=1e-5)
    assert not np.allclose(run(operator, NOISE_STD, steps[NOISE_STD]), at_04)


def test_several_steps_per_dispatch_give_the_single_step_result(problem):
    model, operator, _, _, amortized = problem
    step = inverse.posterior_step(model, operator, NOISE_STD, log_prior, num_samples=32)
    results = {}
    for per_dispatch in (1, 5):
        for latents in (None, 64):  # fresh latents from the state's key, and a fixed set reshuffled per epoch
            results[per_dispatch, latents] = inverse.fit_reverse_kl(
                model, amortized, Y_OBS, operator, NOISE_STD, log_prior, steps=10, num_latents=latents,
                log_every=5, step=step, steps_per_dispatch=per_dispatch, progress=False)
    for latents in (None, 64):
        single, chunked = results[1, latents], results[5, latents]
        # Same keys and latents in the same order; only XLA's fusion of the scanned program differs.
        for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(chunked.params), strict=False):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(chunked.loss_history, single.loss_history, rtol=1e-5)
