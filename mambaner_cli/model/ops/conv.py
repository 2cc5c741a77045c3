"""The Mamba block's causal depthwise convolution in the [b, l, d] layout (no transformers import)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mambaner_cli.model.ops.numba_infer import conv_silu_time_major_numba, use_numba


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


def causal_depthwise_conv_time_major(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
                                     ) -> torch.Tensor:
    """``causal_depthwise_conv`` in the time-major [l, b, d] layout, for inference: the same products and
    sums in the same order (so the same numbers), but each tap is one multiply-add into a contiguous
    slice of the output, with no padded copy of the input."""
    length = x.shape[0]
    kernel = weight.shape[-1]
    taps = weight[:, 0, :]  # d K
    out = x.new_empty(x.shape)  # l b d
    # Tap k reads x[t - (K-1) + k]: positions before the start read the zero padding.
    first = min(kernel - 1, length)
    out[:first].zero_()
    torch.mul(x[: length - first], taps[:, 0], out=out[first:])  # l-K+1 b d
    for k in range(1, kernel):
        shift = min(kernel - 1 - k, length)
        out[shift:].addcmul_(x[: length - shift], taps[:, k])  # l-shift b d
    if bias is not None:
        out.add_(bias)  # l b d
    return out


def infer_conv_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    mask: torch.Tensor | None) -> torch.Tensor:
    """What ``Mixer.infer`` runs on in_proj's x half: silu(causal conv), padding zeroed by ``mask`` [l, b]
    (None: no padding), time-major [l, b, d]. The PyTorch reference (``causal_depthwise_conv_time_major``,
    SiLU, mask), or the numba kernel (ops/numba_infer.py, one pass) where ``use_numba`` says so."""
    if use_numba(x):
        return conv_silu_time_major_numba(x, weight, bias, mask).to(x.dtype)  # l b d
    x = F.silu(causal_depthwise_conv_time_major(x, weight, bias))  # l b d
    return x if mask is None else (x * mask[..., None]).to(x.dtype)  # l b d
