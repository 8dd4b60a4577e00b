"""Conditional base densities, split priors, and the units of a log-likelihood."""

from jcnf.distributions.gaussian import (ConditionalDiagGaussian, SplitPrior, diag_gaussian,
                                         standardizer)
from jcnf.distributions.units import bits_per_dim, dequantization_offset, nats_to_bits_per_dim

__all__ = ["ConditionalDiagGaussian", "SplitPrior", "bits_per_dim", "dequantization_offset", "diag_gaussian",
           "nats_to_bits_per_dim", "standardizer"]
