"""Baselines the experiments compare jcnf's flows against."""

from jcnf.baselines.bernoulli import FactorizedBernoulli, bernoulli_log_prob  # noqa: E402
from jcnf.baselines.logistic import (
                                     DiscretizedLogisticBaseline,
                                     discretized_logistic_log_prob,
                                     mixture_log_prob,
                                     mixture_mode,
                                     mixture_sample,
)

__all__ = ["DiscretizedLogisticBaseline", "FactorizedBernoulli", "bernoulli_log_prob", "discretized_logistic_log_prob",
           "mixture_log_prob", "mixture_mode", "mixture_sample"]
