"""Flax conditioning networks."""

from jcnf.nets.context import resize_context
from jcnf.nets.coupling_nets import ConvCouplingNet, MLPCouplingNet
from jcnf.nets.encoder import ContextEncoder, ResidualBlock
from jcnf.nets.rrdb import RRDB, ResidualDenseBlock, RRDBEncoder

__all__ = ["ContextEncoder", "ConvCouplingNet", "MLPCouplingNet", "RRDB", "RRDBEncoder", "ResidualBlock",
           "ResidualDenseBlock", "resize_context"]
