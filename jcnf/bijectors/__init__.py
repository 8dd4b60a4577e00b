"""distrax bijectors of jcnf: forward maps value towards latent."""

from jcnf.bijectors.actnorm import ActNorm, actnorm_initial_params
from jcnf.bijectors.autoregressive import (
                                           ConditionalMaskedAutoregressive,
                                           elementwise_bijector,
                                           transformer_param_size,
)
from jcnf.bijectors.box import BoxLogit
from jcnf.bijectors.conv1x1 import InvConv1x1, random_rotation_lu
from jcnf.bijectors.coupling import (
                                     ConditionalAdditiveCoupling,
                                     ConditionalAffineCoupling,
                                     ConditionalSplineCoupling,
                                     bounded_affine,
                                     bounded_shift,
                                     make_coupling,
                                     soft_bound,
)
from jcnf.bijectors.squeeze import Squeeze, squeeze2x2, unsqueeze2x2

__all__ = [
    "ActNorm", "actnorm_initial_params", "BoxLogit", "ConditionalMaskedAutoregressive", "elementwise_bijector",
    "transformer_param_size", "InvConv1x1", "random_rotation_lu",
    "ConditionalAdditiveCoupling", "ConditionalAffineCoupling", "ConditionalSplineCoupling",
    "bounded_affine", "bounded_shift", "make_coupling", "soft_bound", "Squeeze", "squeeze2x2", "unsqueeze2x2",
]
