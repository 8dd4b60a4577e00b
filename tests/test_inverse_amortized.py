"""fit_amortized: a posterior in the user's units, box support, early stopping, bad input, reverse-KL fine-tuning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jcnf
from jcnf import inverse
from jcnf.flows import StandardizedFlow

# theta ~ N(0, 4 I) and x = theta + N(0, I) on a shifted scale: the posterior is N(0.8 (x - 10), 0.8 I),
# and the data sit far from the origin with unequal scales, which only standardization makes easy.
N, SHIFT = 600, 10.0


def _pairs(seed=0, n=N):
    rng = np.random.default_rng(seed)
    theta = 2.0 * rng.normal(size=(n, 2))
    return theta.astype(np.float32), (theta + SHIFT + rng.normal(size=(n, 2))).astype(np.float32)


def _tiny(**kwargs):
    return jcnf.ConditionalMAF(blocks=1, hidden=16, **kwargs)


@pytest.fixture(scope="module")
def posterior():
    theta, x = _pairs()
    return inverse.fit_amortized(theta, x, model=_tiny(), batch_size=64, max_epochs=60, patience=10,
                                 reductions=0, learning_rate=3e-3)


def test_samples_follow_the_known_posterior_in_the_users_units(posterior):
    x_obs = np.array([[SHIFT + 2.0, SHIFT - 1.0], [SHIFT, SHIFT]], np.float32)
    samples = posterior.sample(jax.random.PRNGKey(0), x_obs, num_samples=2000)
    assert samples.shape == (2000, 2, 2)
    # 540 training pairs and a one-block flow: a mean within 0.25 of the exact one (posterior std 0.89,
    # Monte Carlo error 0.02) and a spread within 25% show the units and the conditioning are right.
    np.testing.assert_allclose(np.mean(samples, 0), 0.8 * (x_obs - SHIFT), atol=0.25)
    np.testing.assert_allclose(np.std(samples, 0), np.sqrt(0.8), rtol=0.25)
    assert posterior.log_prob(samples[0], x_obs).shape == (2,)


def test_saved_and_loaded_posterior_scores_the_same(posterior, tmp_path):
    theta, x = _pairs(seed=4, n=8)
    loaded = jcnf.load_model(jcnf.save_model(tmp_path / "posterior", posterior))
    # The same arrays and maps, compiled anew: equal to float32 rounding.
    np.testing.assert_allclose(loaded.log_prob(theta, x), posterior.log_prob(theta, x), atol=1e-5)


def test_early_stopping_keeps_the_best_epoch(posterior):
    history = posterior.metadata["history"]
    best = posterior.metadata["best_epoch"]
    losses = [record["validation_loss"] for record in history]
    assert losses[best - 1] == min(losses)
    # Without reductions: stopped `patience` epochs after the best one, or ran out of epochs, at one rate.
    assert len(history) == min(best + 10, 60)
    assert {record["learning_rate"] for record in history} == {3e-3}


@pytest.mark.parametrize("ema_decay", [0.9, None])
def test_the_returned_parameters_are_the_ones_validated(ema_decay):
    # With an average, the validated (and returned) parameters are the average, not the last iterate: the
    # returned flow's loss on the held-out rows must be the best validation loss of the history.
    theta, x = _pairs(n=200)
    trained = inverse.fit_amortized(theta, x, model=_tiny(), batch_size=32, max_epochs=8, patience=2,
                                    reductions=1, learning_rate=1e-2, ema_decay=ema_decay, seed=3)
    _, held_out = inverse.amortized._split(len(theta), 0.1, np.random.default_rng(3))
    # The validation loss is in standardized units: the user-unit density times the scales' Jacobian.
    log_scale = float(np.sum(np.log(trained.standardization.value_scale)))
    loss = -float(jnp.mean(trained.log_prob(theta[held_out], x[held_out]))) - log_scale
    best = min(record["validation_loss"] for record in trained.metadata["history"])
    assert trained.metadata["ema_decay"] == ema_decay
    np.testing.assert_allclose(loss, best, rtol=1e-5, atol=1e-5)


def test_the_average_validates_better_than_the_iterates_at_a_high_rate():
    # At a rate high enough for the iterates to wander, their average has the lower validation loss.
    theta, x = _pairs(n=400)
    options = dict(model=_tiny(), batch_size=16, max_epochs=12, patience=12, reductions=0, learning_rate=3e-2)
    averaged = inverse.fit_amortized(theta, x, ema_decay=0.95, **options)
    iterates = inverse.fit_amortized(theta, x, ema_decay=None, **options)
    best = [min(r["validation_loss"] for r in t.metadata["history"]) for t in (averaged, iterates)]
    assert best[0] < best[1], best


def test_each_reduction_restarts_from_the_best_epoch_at_a_lower_rate(monkeypatch):
    from jcnf.inverse import amortized

    epochs = []

    class Recording:
        """A candidate's jitted epoch that counts its lowerings."""

        def __init__(self, jitted):
            self.jitted, self.lowered = jitted, 0

        def lower(self, *args):
            self.lowered += 1
            return self.jitted.lower(*args)

    def recording_trainer(model):
        epochs.append(Recording(trainer(model)))
        return epochs[-1]

    trainer = amortized._trainer
    monkeypatch.setattr(amortized, "_trainer", recording_trainer)
    # 60 pairs and a high rate: the validation loss stalls within a few epochs, so reductions are reached.
    theta, x = _pairs(seed=5, n=60)
    patience, factor = 2, 0.5
    trained = inverse.fit_amortized(theta, x, model=_tiny(), batch_size=16, max_epochs=200, patience=patience,
                                    reductions=2, reduction_factor=factor, learning_rate=3e-2)
    history = trained.metadata["history"]
    losses = np.array([record["validation_loss"] for record in history])
    rates = np.array([record["learning_rate"] for record in history])
    best = trained.metadata["best_epoch"]
    assert losses[best - 1] == losses.min()
    # The rate steps down by `factor`, each time `patience` epochs after the later of the last best epoch and the
    # last reduction; the run ends `patience` epochs after the last of those, once both reductions are spent or
    # once a reduction brought no improvement.
    levels = sorted(set(rates.tolist()), reverse=True)
    assert 2 <= len(levels) <= 3
    np.testing.assert_allclose(levels, [3e-2 * factor ** k for k in range(len(levels))], rtol=1e-6)
    changes = [i for i in range(1, len(rates)) if rates[i] != rates[i - 1]] + [len(rates)]
    last_change = 0
    for change in changes:
        since = max(int(np.argmin(losses[:change])) + 1, last_change)
        assert change - since == patience, (change, since)
        last_change = change if change < len(rates) else last_change
    assert len(levels) == 3 or best <= last_change
    # The rate is a value in the optimizer state: the epoch (with its validation loss) was lowered and compiled
    # once, ahead of time, for every rate; no call traced it again (an ahead-of-time program refuses other
    # argument types instead of recompiling).
    [epoch] = epochs
    assert epoch.lowered == 1 and epoch.jitted._cache_size() == 0


def test_candidates_train_side_by_side_and_the_lowest_validation_loss_is_returned():
    # Whichever candidate wins, the returned flow and parameters are those with the lowest best validation loss.
    theta, x = _pairs(seed=6, n=400)
    candidates = (_tiny(transformer="spline", num_bins=4), _tiny(transformer="affine"))
    trained = inverse.fit_amortized(theta, x, model=candidates, batch_size=64, max_epochs=40, patience=3,
                                    reductions=1, learning_rate=1e-2)
    records = trained.metadata["candidates"]
    assert [record["flow"] for record in records] == ["ConditionalMAF(transformer='spline')",
                                                     "ConditionalMAF(transformer='affine')"]
    best = [record["best_validation_loss"] for record in records]
    chosen = trained.metadata["chosen"]
    assert chosen == int(np.argmin(best)) and trained.model is candidates[chosen]
    history = trained.metadata["history"]
    assert len(history) == records[chosen]["epochs"]
    assert min(row["validation_loss"] for row in history) == best[chosen]
    # The loser stopped by its own schedule or, at the latest, when the winner finished.
    assert records[1 - chosen]["epochs"] <= records[chosen]["epochs"]


def test_a_single_candidate_in_a_sequence_matches_the_flow_given_alone():
    theta, x = _pairs(seed=7, n=200)
    options = dict(batch_size=50, max_epochs=6, patience=2, reductions=1, learning_rate=1e-2)
    alone = inverse.fit_amortized(theta, x, model=_tiny(), **options)
    listed = inverse.fit_amortized(theta, x, model=[_tiny()], **options)
    assert alone.metadata["history"] == listed.metadata["history"]
    for a, b in zip(jax.tree.leaves(alone.params), jax.tree.leaves(listed.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_default_candidates_add_the_affine_flow_from_three_dimensions():
    from jcnf.inverse import default_posterior_flows

    assert [flow.transformer for flow in default_posterior_flows(2)] == ["spline"]
    assert [flow.transformer for flow in default_posterior_flows(3)] == ["spline", "affine"]


def _run_schedule(losses, patience=2, reductions=3):
    from jcnf.inverse.amortized import _Schedule

    schedule = _Schedule("state-0", 1.0)
    for index, loss in enumerate(losses, start=1):
        schedule.update(index, f"state-{index}", 0.0, loss, patience, reductions, 0.5)
        if schedule.done:
            break
    return schedule


def test_a_reduction_that_brings_no_improvement_ends_training(monkeypatch):
    from jcnf.inverse import amortized

    monkeypatch.setattr(amortized, "_scale_learning_rate", lambda state, factor: state)
    # Best at epoch 2; reduced at 4; epochs 5-6 improve nothing: stop at 6 with one of three reductions spent.
    schedule = _run_schedule([3.0, 2.0, 2.5, 2.6, 2.1, 2.2, 1.0])
    assert (schedule.done, len(schedule.history), schedule.reduced, schedule.best_epoch) == (True, 6, 1, 2)
    assert schedule.best_state == "state-2"
    # The same start with an improvement after the reduction goes on to a second reduction.
    schedule = _run_schedule([3.0, 2.0, 2.5, 2.6, 1.9, 2.2, 2.3, 2.4, 2.5])
    assert schedule.reduced == 2 and schedule.done and schedule.best_epoch == 5


def test_losing_candidates_stop_after_the_first_rung_or_when_a_finished_one_beats_them():
    from jcnf.inverse.amortized import _drop_losers, _Schedule

    def schedule(best, reduced=0, done=False):
        s = _Schedule(None, 1.0)
        s.best_loss, s.reduced, s.done = best, reduced, done
        return s

    # Not every candidate has been reduced yet: nobody stops.
    candidates = [schedule(1.0, reduced=1), schedule(2.0)]
    _drop_losers(candidates)
    assert [c.done for c in candidates] == [False, False]
    # Every candidate has been reduced: only the leader goes on.
    candidates = [schedule(1.0, reduced=1), schedule(2.0, reduced=2), schedule(0.5, reduced=1)]
    _drop_losers(candidates)
    assert [c.done for c in candidates] == [True, True, False]
    # A finished candidate beats a running one that has not been reduced: the running one stops.
    candidates = [schedule(1.0, reduced=3, done=True), schedule(2.0), schedule(0.9)]
    _drop_losers(candidates)
    assert [c.done for c in candidates] == [True, True, False]


def test_a_reduction_scales_only_the_rate():
    from jcnf.inverse.amortized import _optimizer, _scale_learning_rate

    params = {"w": jnp.ones(3)}
    optimizer = _optimizer(1e-2, clip_norm=1.0)
    from flax.training import train_state

    state = train_state.TrainState.create(apply_fn=None, params=params, tx=optimizer)
    state = state.apply_gradients(grads={"w": jnp.array([1.0, -2.0, 0.5])})
    reduced = _scale_learning_rate(state, 0.25)
    # Same parameters and Adam moments; the rate, a value in the state, is a quarter (no new optimizer, no
    # recompilation), so the next step is a quarter as long from the same moments.
    assert jax.tree.structure(reduced.opt_state) == jax.tree.structure(state.opt_state)
    np.testing.assert_array_equal(reduced.params["w"], state.params["w"])
    step = jax.tree.map(lambda a, b: a - b, state.apply_gradients(grads={"w": jnp.ones(3)}).params, state.params)
    small = jax.tree.map(lambda a, b: a - b, reduced.apply_gradients(grads={"w": jnp.ones(3)}).params,
                         reduced.params)
    # Steps of ~2.5e-3 read as differences of float32 parameters near 1 (spacing 6e-8): relative error < 1e-4.
    np.testing.assert_allclose(small["w"], 0.25 * step["w"], rtol=1e-4)


def test_box_bounds_keep_samples_inside_and_the_density_normalized():
    rng = np.random.default_rng(1)
    theta = rng.uniform(0.0, 1.0, (N, 1)).astype(np.float32)
    x = (theta + 0.3 * rng.normal(size=(N, 1))).astype(np.float32)
    posterior = inverse.fit_amortized(theta, x, model=_tiny(), bounds=(0.0, 1.0), batch_size=64, max_epochs=15,
                                      patience=5, learning_rate=3e-3)
    context = np.array([[0.9], [0.1]], np.float32)
    samples = posterior.sample(jax.random.PRNGKey(1), context, num_samples=500)
    assert float(samples.min()) > 0.0 and float(samples.max()) < 1.0
    # The density integrates to 1 over the box (midpoint rule on 2000 cells; the flow is smooth).
    grid = (np.arange(2000, dtype=np.float32)[:, None] + 0.5) / 2000
    for row in context:
        mass = float(jnp.sum(jnp.exp(posterior.log_prob(grid, np.repeat(row[None], 2000, 0))))) / 2000
        assert abs(mass - 1.0) < 1e-2


def test_the_module_form_scores_as_the_trained_model(posterior):
    theta, x = _pairs(seed=3, n=8)
    flow = StandardizedFlow.from_trained(posterior)
    # The same maps in float32 along two routes: rounding only.
    np.testing.assert_allclose(flow.apply({"params": posterior.params}, theta, x), posterior.log_prob(theta, x),
                               atol=1e-4)


def test_reverse_kl_fine_tunes_a_fit_amortized_posterior_in_the_users_units(posterior):
    x_obs = np.array([SHIFT + 1.0, SHIFT - 1.0], np.float32)

    def log_prior(theta):
        return inverse.gaussian_log_prob(theta, np.zeros(2, np.float32), 4.0 * np.eye(2, dtype=np.float32))

    result = inverse.fit_reverse_kl(posterior, inverse.precondition(posterior.params), x_obs - SHIFT,
                                    inverse.identity(2), 1.0, log_prior, steps=3, context=x_obs[None],
                                    progress=False, eval_samples=256, eval_every=3)
    assert jax.tree.structure(result.params) == jax.tree.structure(posterior.params)
    # objective = KL(q || posterior) - log Z, with Z = N(y; 0, 5 I) (2 pi)^(2/2) the integral of the unnormalized
    # posterior (the likelihood's normalizer is dropped). The amortized start is close to the exact posterior, so
    # its KL is a few hundredths of a nat; a flow read in the wrong units would be off by nats. The lower margin
    # is the Monte Carlo error of 256 evaluation samples.
    y = x_obs - SHIFT
    log_z = -0.5 * float(y @ y) / 5.0 - np.log(2 * np.pi * 5.0) + np.log(2 * np.pi)
    kl = result.objective_history[:, 1] + log_z
    assert np.all(kl > -0.05) and np.all(kl < 0.3), kl
    tuned = jcnf.TrainedModel(posterior.model, result.params, standardization=posterior.standardization)
    assert tuned.sample(jax.random.PRNGKey(2), x_obs[None], num_samples=4).shape == (4, 1, 2)


@pytest.mark.parametrize("kwargs,match", [
    ({"validation_fraction": 0.0}, "`validation_fraction`"), ({"validation_fraction": 1.5}, "`validation_fraction`"),
    ({"patience": 0}, "`patience`"), ({"reductions": -1}, "`reductions`"),
    ({"reduction_factor": 1.0}, "`reduction_factor`"), ({"reduction_factor": 0.0}, "`reduction_factor`"),
    ({"learning_rate": 0.0}, "`learning_rate`"), ({"clip_norm": -1.0}, "`clip_norm`"),
    ({"ema_decay": 1.0}, "`ema_decay`"), ({"ema_decay": 0.0}, "`ema_decay`"), ({"ema_decay": "fast"}, "`ema_decay`"),
    ({"bounds": (1.0, -1.0)}, "`bounds`"),
    ({"bounds": (-1.0, 1.0)}, "outside `bounds`"), ({"model": []}, "`model` must be a flow or a non-empty"),
    ({"model": ["spline"]}, "`model` must be a flow or a non-empty")])
def test_bad_options_raise_naming_the_argument(kwargs, match):
    theta, x = _pairs(n=20)
    with pytest.raises(ValueError, match=match):
        inverse.fit_amortized(theta, x, batch_size=8, **kwargs)


def test_mismatched_rows_raise_naming_the_context():
    theta, x = _pairs(n=20)
    with pytest.raises(ValueError, match="`context`"):
        inverse.fit_amortized(theta, x[:10], batch_size=8)
