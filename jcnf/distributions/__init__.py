"""Conditional base densities, split priors, the standard-normal log-density, and log-likelihood units."""

from jcnf.distributions.gaussian import ConditionalDiagGaussian, SplitPrior, diag_gaussian, standardizer
from jcnf.distributions.normal import log_density_dtype, standard_normal_log_prob
from jcnf.distributions.units import bits_per_dim, dequantization_offset, nats_to_bits_per_dim

__all__ = ["ConditionalDiagGaussian", "SplitPrior", "bits_per_dim", "dequantization_offset", "diag_gaussian",
           "log_density_dtype", "nats_to_bits_per_dim", "standard_normal_log_prob", "standardizer"]
