"""The Mamba block's causal depthwise convolution in the [b, l, d] layout (no transformers import)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Causal depthwise conv over l in the [b, l, d] layout; weight [d, 1, K] as in ``nn.Conv1d``.

    out[:, t] = bias + Σ_k weight[:, 0, k] * x[:, t - (K-1) + k] (zero before the start), i.e.
    ``conv1d(x^T, padding=K-1, groups=d)[..., :l]^T``.
    """
    length = x.shape[1]
    kernel = weight.shape[-1]
    taps = weight[:, 0, :]  # d K
    padded = F.pad(x, (0, 0, kernel - 1, 0))  # b l+K-1 d
    out = padded[:, 0:length] * taps[:, 0]  # b l d
    for k in range(1, kernel):
        out = torch.addcmul(out, padded[:, k : k + length], taps[:, k])  # b l d
    if bias is not None:
        out = out + bias  # b l d
    return out
