"""Flax conditioning networks."""

from jcnf.nets.context import backprojected_upsample, resize_context, upsample_context
from jcnf.nets.coupling_nets import ConvCouplingNet, MLPCouplingNet
from jcnf.nets.encoder import ContextEncoder, ResidualBlock
from jcnf.nets.rrdb import RRDB, ResidualDenseBlock, RRDBEncoder

__all__ = ["ContextEncoder", "ConvCouplingNet", "MLPCouplingNet", "RRDB", "RRDBEncoder", "ResidualBlock",
           "ResidualDenseBlock", "backprojected_upsample", "resize_context", "upsample_context"]
