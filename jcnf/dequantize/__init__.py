"""Dequantizers: the fixed ones (uniform, none) and the learnable ones (variational, binary)."""

from jcnf.dequantize.base import DequantizeFn, Dequantizer, apply_dequantizer, init_dequantizer
from jcnf.dequantize.binary import BinaryDequantizer, binarize, elbo_bits_per_pixel, soft_image  # noqa: E402
from jcnf.dequantize.uniform import no_dequantization, uniform_dequantization
from jcnf.dequantize.variational import VariationalDequantizer

__all__ = ["BinaryDequantizer", "DequantizeFn", "Dequantizer", "VariationalDequantizer", "apply_dequantizer",
           "binarize", "elbo_bits_per_pixel", "init_dequantizer", "no_dequantization", "soft_image",
           "uniform_dequantization"]
