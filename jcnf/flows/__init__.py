"""Ready-made conditional flows."""

from jcnf.flows.base import ConditionalFlow, standard_normal_log_prob, trained_event_shape, with_event_shape
from jcnf.flows.distribution import ValueToLatent, flow_distribution
from jcnf.flows.glow import ConditionalGlow
from jcnf.flows.legacy import stack_legacy_params
from jcnf.flows.realnvp import ConditionalRealNVP
from jcnf.flows.superres import SuperResolutionGlow

__all__ = ["ConditionalFlow", "ConditionalGlow", "ConditionalRealNVP", "SuperResolutionGlow", "ValueToLatent",
           "flow_distribution", "stack_legacy_params", "standard_normal_log_prob", "trained_event_shape", "with_event_shape"]
