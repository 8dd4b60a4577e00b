"""Ready-made conditional flows."""

from jcnf.distributions.normal import standard_normal_log_prob
from jcnf.flows.base import ConditionalFlow, trained_event_shape, with_event_shape
from jcnf.flows.distribution import ValueToLatent, flow_distribution
from jcnf.flows.glow import ConditionalGlow
from jcnf.flows.legacy import stack_legacy_params
from jcnf.flows.maf import ConditionalMAF, MaskedAutoregressiveBlock
from jcnf.flows.push import push_latents
from jcnf.flows.realnvp import ConditionalRealNVP
from jcnf.flows.superres import SuperResolutionGlow

__all__ = ["ConditionalFlow", "ConditionalGlow", "ConditionalMAF", "ConditionalRealNVP", "MaskedAutoregressiveBlock",
           "SuperResolutionGlow", "ValueToLatent",
           "flow_distribution", "push_latents", "stack_legacy_params", "standard_normal_log_prob",
           "trained_event_shape", "with_event_shape"]
