"""Training engine: train state, jitted and sharded steps, the `fit` loop, checkpoints.

state = jcnf.train.create_state(model, jcnf.train.default_optimizer(1e-3), rng, example_batch)
step = jcnf.train.mle_step(model, dequantizer=jcnf.dequantize.uniform_dequantization(256))
state, metrics = step(state, {"value": v, "context": c})

result = jcnf.train.fit(model, {"value": x, "context": y}, steps=5000, batch_size=64,
checkpoint_dir="runs/ckpt", metrics_path="runs/metrics.jsonl")
"""

# Each name has one public home: the mesh and shardings are `jcnf.sharding`'s, dequantizers
# `jcnf.dequantize`'s, batch iterators `jcnf.data`'s.
from jcnf.train.checkpoint import Checkpointer
from jcnf.train.loop import FitResult, MetricsLog, TooManySkippedSteps, fit
from jcnf.train.optimizer import default_optimizer
from jcnf.train.state import TrainState, count_params, create_state
from jcnf.train.steps import (
                              ReverseKLStep,
                              TrainStep,
                              apply_loss,
                              make_train_step,
                              mle_eval_step,
                              mle_step,
                              reverse_kl_step,
                              sample_step,
)

__all__ = ["Checkpointer", "FitResult", "MetricsLog", "ReverseKLStep", "TooManySkippedSteps", "TrainState", "TrainStep",
           "apply_loss", "count_params", "create_state", "default_optimizer", "fit", "make_train_step",
           "mle_eval_step", "mle_step", "reverse_kl_step", "sample_step"]
