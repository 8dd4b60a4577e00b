"""Likelihood in bits per dimension: the public home of `jcnf.distributions.units`.

The code lives with the distributions because the flows' training steps report
bits per dimension and sit below metrics; users find it here, with every other metric.
"""

from jcnf.distributions.units import bits_per_dim, dequantization_offset, nats_to_bits_per_dim

__all__ = ["bits_per_dim", "dequantization_offset", "nats_to_bits_per_dim"]
