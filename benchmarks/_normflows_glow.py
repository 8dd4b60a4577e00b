"""normflows 1.7.3's own Glow (unconditional), built as its documentation's multiscale example builds it.

It is the PyTorch peer whose published figures the throughput targets refer to. It differs from
jcnf's ConditionalGlow in ways that favour it on cost: no context encoder and
no context channels in the couplings; unconditional split priors. Its
`sample` also returns log-probabilities (its only sampling entry point).
Optional: only used when `normflows` is importable.
"""

from __future__ import annotations


def build_normflows_glow(levels: int, steps: int, hidden: int, size: int, channels: int = 3):
    """A normflows MultiscaleFlow Glow with L levels, K GlowBlocks per level, LU 1x1 convs, affine couplings."""
    import normflows as nf

    q0, merges, flows = [], [], []
    for i in range(levels):
        level_flows = [nf.flows.GlowBlock(channels * 2 ** (levels + 1 - i), hidden, split_mode="channel",
                                          scale=True, use_lu=True) for _ in range(steps)]
        level_flows.append(nf.flows.Squeeze())
        flows.append(level_flows)
        if i > 0:
            merges.append(nf.flows.Merge())
            latent_shape = (channels * 2 ** (levels - i), size // 2 ** (levels - i), size // 2 ** (levels - i))
        else:
            latent_shape = (channels * 2 ** (levels + 1), size // 2 ** levels, size // 2 ** levels)
        q0.append(nf.distributions.DiagGaussian(latent_shape))
    return nf.MultiscaleFlow(q0, flows, merges, class_cond=False)
