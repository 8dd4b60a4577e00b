"""Ready-made conditional flows."""

from jcnf.flows.base import ConditionalFlow, trained_event_shape, with_event_shape
from jcnf.flows.distribution import ValueToLatent, flow_distribution
from jcnf.flows.glow import ConditionalGlow
from jcnf.flows.maf import ConditionalMAF, MaskedAutoregressiveBlock
from jcnf.flows.push import push_latents
from jcnf.flows.realnvp import ConditionalRealNVP
from jcnf.flows.registry import register
from jcnf.flows.saved import load_model, save_model
from jcnf.flows.standardized import StandardizedFlow
from jcnf.flows.superres import SuperResolutionGlow
from jcnf.flows.trained import Standardization, TrainedModel

__all__ = ["ConditionalFlow", "ConditionalGlow", "ConditionalMAF", "ConditionalRealNVP", "MaskedAutoregressiveBlock",
           "Standardization", "StandardizedFlow", "SuperResolutionGlow", "TrainedModel", "ValueToLatent",
           "flow_distribution", "load_model", "push_latents", "register", "save_model", "trained_event_shape",
           "with_event_shape"]
