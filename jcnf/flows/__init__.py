"""Ready-made conditional flows."""

from jcnf.flows.base import ConditionalFlow, standard_normal_log_prob
from jcnf.flows.distribution import ValueToLatent, flow_distribution
from jcnf.flows.glow import ConditionalGlow
from jcnf.flows.realnvp import ConditionalRealNVP

__all__ = ["ConditionalFlow", "ConditionalGlow", "ConditionalRealNVP", "ValueToLatent",
           "flow_distribution", "standard_normal_log_prob"]
