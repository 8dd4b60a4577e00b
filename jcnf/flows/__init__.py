"""Ready-made conditional flows."""

from jcnf.flows.base import ConditionalFlow, trained_event_shape, with_event_shape
from jcnf.flows.distribution import ValueToLatent, flow_distribution
from jcnf.flows.glow import ConditionalGlow
from jcnf.flows.push import push_latents
from jcnf.flows.realnvp import ConditionalRealNVP
from jcnf.flows.superres import SuperResolutionGlow

__all__ = ["ConditionalFlow", "ConditionalGlow", "ConditionalRealNVP", "SuperResolutionGlow", "ValueToLatent",
           "flow_distribution", "push_latents", "trained_event_shape", "with_event_shape"]
