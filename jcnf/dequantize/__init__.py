"""Learnable dequantizers; the fixed ones (uniform, none) live in `jcnf.train`."""

from jcnf.dequantize.variational import VariationalDequantizer

__all__ = ["VariationalDequantizer"]
