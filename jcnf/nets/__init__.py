"""Flax conditioning networks."""

from jcnf.nets.context import backprojected_upsample, resize_context, upsample_context
from jcnf.nets.coupling_nets import ConvCouplingNet, MLPCouplingNet, ResidualMLPCouplingNet
from jcnf.nets.embedding import CNNEmbedding, DeepSetEmbedding, MLPEmbedding
from jcnf.nets.encoder import ContextEncoder, ResidualBlock
from jcnf.nets.made import MADE, MaskedDense, made_masks
from jcnf.nets.rrdb import RRDB, ResidualDenseBlock, RRDBEncoder

__all__ = ["CNNEmbedding", "ContextEncoder", "ConvCouplingNet", "DeepSetEmbedding", "MADE", "MLPCouplingNet",
           "MLPEmbedding", "MaskedDense", "RRDB", "RRDBEncoder", "ResidualBlock",
           "ResidualDenseBlock", "ResidualMLPCouplingNet", "backprojected_upsample", "made_masks", "resize_context",
           "upsample_context"]
