"""A PyTorch conditional Glow with jcnf's ConditionalGlow architecture, written as the benchmark's peer.

Same layers, widths and parameter count as `jcnf.ConditionalGlow` with affine
couplings (levels L, steps K, hidden, context_features, encoder_blocks): a
context encoder (conv3x3, residual blocks, one stride-2 conv per level), then
per level squeeze -> K x (ActNorm, LU 1x1 conv, affine coupling whose
conditioner is conv3x3-ReLU-conv1x1-ReLU-conv3x3 on the kept half and the
level's context features) -> split with a conditional Gaussian split prior,
and a conditional top prior. The LU conv uses sum(log_diag) for its log-det
and two triangular solves for its inverse, like jcnf. Layout is NCHW
(PyTorch's native one). Used only by the benchmarks; torch is optional.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def squeeze(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c * 4, h // 2, w // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    b, c4, h, w = x.shape
    x = x.view(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c4 // 4, h * 2, w * 2)


class ActNorm(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x, inverse=False):
        positions = x.shape[2] * x.shape[3]
        log_det = positions * self.log_scale.sum()
        if inverse:
            return x * torch.exp(-self.log_scale) - self.loc, -log_det.expand(x.shape[0])
        return (x + self.loc) * torch.exp(self.log_scale), log_det.expand(x.shape[0])


class InvConv1x1LU(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels))
        _, lower, upper = torch.linalg.lu(q)
        signs = torch.sign(torch.diagonal(upper))
        self.lower = nn.Parameter(torch.tril(signs[:, None] * lower * signs[None, :], -1))
        self.upper = nn.Parameter(torch.triu(signs[:, None] * upper, 1))
        self.log_diag = nn.Parameter(torch.log(torch.abs(torch.diagonal(upper))))
        self.register_buffer("eye", torch.eye(channels))

    def _factors(self):
        lower = torch.tril(self.lower, -1) + self.eye
        upper = torch.triu(self.upper, 1) + torch.diag(torch.exp(self.log_diag))
        return lower, upper

    def forward(self, x, inverse=False):
        lower, upper = self._factors()
        log_det = x.shape[2] * x.shape[3] * self.log_diag.sum()
        if inverse:
            lower_inv = torch.linalg.solve_triangular(lower, self.eye, upper=False, unitriangular=True)
            weight = torch.linalg.solve_triangular(upper, lower_inv, upper=True)
            return F.conv2d(x, weight[:, :, None, None]), -log_det.expand(x.shape[0])
        return F.conv2d(x, (lower @ upper)[:, :, None, None]), log_det.expand(x.shape[0])


class CouplingNet(nn.Sequential):
    def __init__(self, in_channels: int, hidden: int, out_channels: int):
        last = nn.Conv2d(hidden, out_channels, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        super().__init__(nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(hidden, hidden, 1), nn.ReLU(), last)


class AffineCoupling(nn.Module):
    def __init__(self, channels: int, hidden: int, features: int):
        super().__init__()
        self.split = channels // 2
        self.net = CouplingNet(self.split + features, hidden, 2 * (channels - self.split))

    def forward(self, x, h, inverse=False):
        x1, x2 = x[:, :self.split], x[:, self.split:]
        shift, raw = self.net(torch.cat([x1, h.to(x1.dtype)], 1)).to(x.dtype).chunk(2, 1)
        log_scale = 3.0 * torch.tanh(raw / 3.0)
        log_det = log_scale.flatten(1).sum(1)
        if inverse:
            return torch.cat([x1, (x2 - shift) * torch.exp(-log_scale)], 1), -log_det
        return torch.cat([x1, x2 * torch.exp(log_scale) + shift], 1), log_det


class GlowBlock(nn.Module):
    def __init__(self, channels: int, hidden: int, features: int):
        super().__init__()
        self.actnorm = ActNorm(channels)
        self.conv = InvConv1x1LU(channels)
        self.couple = AffineCoupling(channels, hidden, features)

    def forward(self, x, h, inverse=False):
        if inverse:
            x, ld3 = self.couple(x, h, inverse=True)
            x, ld2 = self.conv(x, inverse=True)
            x, ld1 = self.actnorm(x, inverse=True)
        else:
            x, ld1 = self.actnorm(x)
            x, ld2 = self.conv(x)
            x, ld3 = self.couple(x, h)
        return x, ld1 + ld2 + ld3


class GaussianHead(nn.Module):
    """Zero-initialised conv3x3 giving (mean, log_scale)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 2 * out_channels, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, inputs):
        return self.conv(inputs).float().chunk(2, 1)


class ContextEncoder(nn.Module):
    def __init__(self, in_channels: int, features: int, blocks: int, levels: int):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, features, 3, padding=1)
        self.blocks = nn.ModuleList(nn.ModuleList([nn.Conv2d(features, features, 3, padding=1),
                                                   nn.Conv2d(features, features, 3, padding=1)])
                                    for _ in range(blocks))
        self.down = nn.ModuleList(nn.Conv2d(features, features, 3, stride=2, padding=1) for _ in range(levels))

    def forward(self, context, size):
        if context.shape[2:] != size:
            context = F.interpolate(context, size=size, mode="nearest")
        h = self.stem(context)
        for first, second in self.blocks:
            h = h + 0.2 * second(F.relu(first(h)))
        outputs = []
        for down in self.down:
            h = F.relu(down(h))
            outputs.append(h)
        return outputs


class TorchConditionalGlow(nn.Module):
    """forward_and_log_det(value, context) and inverse(z, context), NCHW."""

    def __init__(self, channels: int, context_channels: int, levels: int = 3, steps: int = 8, hidden: int = 512,
                 context_features: int = 64, encoder_blocks: int = 2):
        super().__init__()
        self.levels = levels
        self.steps = steps
        self.encoder = ContextEncoder(context_channels, context_features, encoder_blocks, levels)
        self.flow_steps = nn.ModuleList()
        self.split_priors = nn.ModuleList()
        c = channels
        for level in range(levels):
            c *= 4
            self.flow_steps.extend(GlowBlock(c, hidden, context_features) for _ in range(steps))
            if level < levels - 1:
                self.split_priors.append(GaussianHead(c // 2 + context_features, c - c // 2))
                c //= 2
        self.top_prior = GaussianHead(context_features, c)

    def _level_blocks(self, level):
        return self.flow_steps[level * self.steps:(level + 1) * self.steps]

    def forward_and_log_det(self, value, context):
        features = self.encoder(context, value.shape[2:])
        x, log_det, factored = value, value.new_zeros(value.shape[0]), []
        for level in range(self.levels):
            x = squeeze(x)
            for step in self._level_blocks(level):
                x, step_log_det = step(x, features[level])
                log_det = log_det + step_log_det
            if level < self.levels - 1:
                kept, out = x.chunk(2, 1)
                mean, log_scale = self.split_priors[level](torch.cat([kept, features[level].to(kept.dtype)], 1))
                factored.append((out - mean) * torch.exp(-log_scale))
                x = kept
            else:
                mean, log_scale = self.top_prior(features[level])
                x = (x - mean) * torch.exp(-log_scale)
            log_det = log_det - log_scale.flatten(1).sum(1)
        z = unsqueeze(x)
        for eps in reversed(factored):
            z = unsqueeze(torch.cat([z, eps], 1))
        return z, log_det

    def log_prob(self, value, context):
        z, log_det = self.forward_and_log_det(value, context)
        return -0.5 * (z ** 2).flatten(1).sum(1) - 0.5 * math.log(2 * math.pi) * z[0].numel() + log_det

    def inverse(self, z, context):
        features = self.encoder(context, z.shape[2:])
        factored = []
        for _ in range(self.levels - 1):
            z = squeeze(z)
            z, eps = z.chunk(2, 1)
            factored.append(eps)
        z = squeeze(z)
        mean, log_scale = self.top_prior(features[-1])
        x = mean + torch.exp(log_scale) * z
        for level in reversed(range(self.levels)):
            if level < self.levels - 1:
                mean, log_scale = self.split_priors[level](torch.cat([x, features[level].to(x.dtype)], 1))
                x = torch.cat([x, mean + torch.exp(log_scale) * factored[level]], 1)
            for step in reversed(self._level_blocks(level)):
                x, _ = step(x, features[level], inverse=True)
            x = unsqueeze(x)
        return x
