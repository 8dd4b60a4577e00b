"""Learnable dequantizers; the fixed ones (uniform, none) live in `jcnf.train`."""

from jcnf.dequantize.variational import VariationalDequantizer
from jcnf.dequantize.binary import BinaryDequantizer, binarize, elbo_bits_per_pixel, soft_image  # noqa: E402

__all__ = ["VariationalDequantizer", "BinaryDequantizer", "binarize", "elbo_bits_per_pixel", "soft_image"]
