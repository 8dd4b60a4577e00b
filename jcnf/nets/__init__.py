"""Flax conditioning networks."""

from jcnf.nets.context import resize_context
from jcnf.nets.coupling_nets import ConvCouplingNet, MLPCouplingNet
from jcnf.nets.encoder import ContextEncoder, ResidualBlock

__all__ = ["ConvCouplingNet", "MLPCouplingNet", "ContextEncoder", "ResidualBlock", "resize_context"]
