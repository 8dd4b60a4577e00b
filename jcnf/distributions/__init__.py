"""Conditional base densities and split priors."""

from jcnf.distributions.gaussian import (ConditionalDiagGaussian, SplitPrior, diag_gaussian,
                                         standardizer)

__all__ = ["ConditionalDiagGaussian", "SplitPrior", "diag_gaussian", "standardizer"]
