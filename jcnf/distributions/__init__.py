"""Conditional base densities, split priors and the standard-normal log-density.

The log-likelihood unit conversions of `jcnf.distributions.units` sit here, below
the flows and the training steps that report bits per dimension; their public
home is `jcnf.metrics`.
"""

from jcnf.distributions.gaussian import ConditionalDiagGaussian, SplitPrior, diag_gaussian, standardizer
from jcnf.distributions.normal import standard_normal_log_prob

__all__ = ["ConditionalDiagGaussian", "SplitPrior", "diag_gaussian", "standard_normal_log_prob", "standardizer"]
