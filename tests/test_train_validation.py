"""jcnf.train.validation: fit's held-out loss, best params, early stopping and their exact resume."""

import _train_worker as worker
import jax
import numpy as np
import optax
import pytest

import jcnf
from jcnf import train

MODEL = jcnf.ConditionalRealNVP(**worker.MODEL_KWARGS)


@pytest.fixture(scope="module")
def options():
    # One step for the module's runs: they share its compilation.
    return {"batch_size": 32, "optimizer": optax.adam(1e-2), "log_every": 4, "progress": False,
            "step_fn": train.mle_step(MODEL)}


def _assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(jax.device_get(a)), jax.tree.leaves(jax.device_get(b)), strict=True):
        np.testing.assert_array_equal(x, y)


def test_best_params_and_early_stopping(tmp_path, options):
    # Held-out values shifted by 3 away from the training values: as the flow fits the training
    # data its density there soon falls, so training stops long before step 40.
    data = worker.tiny_problem(128)
    held_out = worker.tiny_problem(64, seed=1)
    shifted = {"value": held_out["value"] + 3.0, "context": held_out["context"]}
    run = dict(options, validation=shifted, eval_every=2, patience=2, checkpoint_dir=tmp_path)
    result = train.fit(MODEL, data, 40, **run)
    records = [r for r in result.history if "val_loss" in r]
    losses = [r["val_loss"] for r in records]
    best = records[int(np.argmin(losses))]
    assert [r["step"] for r in records] == list(range(2, int(result.state.step) + 1, 2))
    # Stopped after exactly `patience` evaluations without a lower loss than the best one.
    assert result.best_step == best["step"] == int(result.state.step) - 2 * 2 < 40
    assert records[-1]["best_step"] == best["step"]
    assert result.params is result.best_params["flow"]
    # The best params score the best recorded loss: fit averages two 32-row means, this is one
    # 64-row float32 mean, so they agree to float32 rounding.
    evaluate = train.mle_eval_step(MODEL)
    best_state = result.state.replace(params=result.best_params)
    np.testing.assert_allclose(float(evaluate(best_state, shifted)["loss"]), best["val_loss"], rtol=1e-6)
    # An early-stopped run, rerun, returns at once with the same best params.
    again = train.fit(MODEL, data, 40, **run)
    assert int(again.state.step) == int(result.state.step) and again.best_step == best["step"]
    assert again.history == []
    _assert_trees_equal(again.best_params, result.best_params)


def test_resume_continues_the_best_so_far_exactly(tmp_path, options):
    data = worker.tiny_problem(160)
    run = dict(options, validation_fraction=0.2, eval_every=3, checkpoint_every=3)
    straight = train.fit(MODEL, data, 12, **run)
    train.fit(MODEL, data, 6, checkpoint_dir=tmp_path, **run)
    resumed = train.fit(MODEL, data, 12, checkpoint_dir=tmp_path, **run)
    assert resumed.best_step == straight.best_step
    _assert_trees_equal(resumed.best_params, straight.best_params)
    _assert_trees_equal(resumed.state.params, straight.state.params)
    expected = [r for r in straight.history if "val_loss" in r and r["step"] > 6]
    assert [r for r in resumed.history if "val_loss" in r] == expected


@pytest.mark.parametrize("kwargs,match", [
    ({"validation_fraction": 0.0}, r"`validation_fraction` must be a number in \(0, 1\); got 0.0"),
    ({"validation_fraction": 1.0}, r"`validation_fraction` must be a number in \(0, 1\)"),
    ({"validation_fraction": True}, r"`validation_fraction` must be a number in \(0, 1\)"),
    ({"validation_fraction": 0.2, "patience": 0}, "`patience`"),
    ({"validation_fraction": 0.2, "patience": 1.5}, "`patience`"),
    ({"patience": 3}, r"`patience` \(3\) needs `validation` or `validation_fraction`"),
    ({"validation_fraction": 0.2, "validation": {}}, "not both"),
    ({"validation": {"value": np.zeros((8, 2), np.float32)}}, r"`validation` must have keys"),
])
def test_bad_validation_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train.fit(MODEL, worker.tiny_problem(64), 2, batch_size=32, progress=False, **kwargs)
