"""Likelihood in bits per dimension: the unit conversions of `jcnf.distributions.units`, re-exported.

They live with the distributions because the training steps report bits per
dimension and metrics sit above the flows; `jcnf.metrics` offers them too so
that evaluation code finds every metric in one place.
"""

from jcnf.distributions.units import bits_per_dim, dequantization_offset, nats_to_bits_per_dim

__all__ = ["bits_per_dim", "dequantization_offset", "nats_to_bits_per_dim"]
