"""A Mamba backbone that needs nothing but torch: transformers' ``MambaModel`` for tagging, light to import.

Why: importing transformers' ``modeling_mamba`` pulls in most of transformers (and torch.distributed,
dynamo, sympy…): about 4-6 s of CPU, more than `mambaner tag` spends tagging a short document. This
module computes the same function as ``MambaModel`` whose mixers ``use_fast_scan`` made
``FastMambaMixer`` (the CPU path: [b, l, channels] layout, causal depthwise convolution as K shifted
multiply-adds, ``scan.scan_channels_last``), with exactly the same parameter names and shapes, so one
state dict loads into either::

    embeddings.weight                              [vocab, h]   (unused with inputs_embeds)
    layers.{i}.norm.weight                         [h]          RMSNorm before the mixer
    layers.{i}.mixer.in_proj.weight (.bias)        [2d, h]      x and the gate z
    layers.{i}.mixer.conv1d.weight, .bias          [d, 1, K], [d]   causal depthwise convolution
    layers.{i}.mixer.x_proj.weight                 [r + 2n, d]  Δ (rank r), B and C
    layers.{i}.mixer.dt_proj.weight, .bias         [d, r], [d]
    layers.{i}.mixer.A_log, layers.{i}.mixer.D     [d, n], [d]
    layers.{i}.mixer.out_proj.weight (.bias)       [h, d]
    norm_f.weight                                  [h]

(h = hidden_size, d = expand * h, n = state_size, r = ceil(h / 16) unless given, K = conv_kernel.)

It is an inference backbone: training keeps transformers' ``MambaModel`` (its initialisation, PEFT and
gradient checkpointing support); tagging loads the trained weights into this one. Step-by-step
generation with a cache is not supported (a tagger reads whole sentences). On CUDA with mamba_ssm
installed the scan runs through its fused kernel (``scan.selective_scan``), as ``FastMambaMixer`` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mambaner_cli.model.ops.conv import causal_depthwise_conv, causal_depthwise_conv_time_major
from mambaner_cli.model.ops.scan import (
    mamba_ssm_available,
    scan_channels_last,
    scan_time_major,
    selective_scan,
)


@dataclass(frozen=True)
class BackboneConfig:
    """The MambaConfig fields the backbone reads (transformers' defaults)."""

    hidden_size: int
    num_layers: int
    state_size: int = 16
    expand: int = 2
    conv_kernel: int = 4
    vocab_size: int = 1
    time_step_rank: int = 0  # 0: ceil(hidden_size / 16), transformers' "auto"
    layer_norm_epsilon: float = 1e-5
    use_bias: bool = False
    use_conv_bias: bool = True
    residual_in_fp32: bool = True

    @property
    def intermediate_size(self) -> int:
        return int(self.expand * self.hidden_size)

    @property
    def rank(self) -> int:
        return self.time_step_rank or math.ceil(self.hidden_size / 16)

    @classmethod
    def from_mamba_config(cls, config: Any) -> BackboneConfig:
        """From a transformers ``MambaConfig`` (read by attribute: transformers need not be imported)."""
        if getattr(config, "hidden_act", "silu") != "silu":
            raise ValueError(f"the light backbone implements hidden_act='silu' only, not {config.hidden_act!r}")
        return cls(hidden_size=config.hidden_size, num_layers=config.num_hidden_layers,
                   state_size=config.state_size, expand=config.expand, conv_kernel=config.conv_kernel,
                   vocab_size=config.vocab_size, time_step_rank=int(config.time_step_rank),
                   layer_norm_epsilon=config.layer_norm_epsilon, use_bias=config.use_bias,
                   use_conv_bias=config.use_conv_bias, residual_in_fp32=config.residual_in_fp32)


@dataclass
class BackboneOutput:
    """What ``MambaModel`` returns, as far as a tagger reads it."""

    last_hidden_state: torch.Tensor  # b l h


class RMSNorm(nn.Module):
    """transformers' ``MambaRMSNorm``: x / rms(x) * weight, the statistics in float32."""

    def __init__(self, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        dtype = hidden_states.dtype
        x = hidden_states.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)  # b l h
        return self.weight * x.to(dtype)


def mask_padding(hidden_states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Zero the padded positions (mask [b, l], 1 at tokens), as transformers' mixer does."""
    if mask is None:
        return hidden_states
    return (hidden_states * mask[:, :, None]).to(hidden_states.dtype)  # b l k


class Mixer(nn.Module):
    """The selective-SSM mixer of one Mamba block (``MambaMixer``'s parameters, full-sequence forward)."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        h, d, n, r = config.hidden_size, config.intermediate_size, config.state_size, config.rank
        self.ssm_state_size, self.time_step_rank = n, r
        self.in_proj = nn.Linear(h, 2 * d, bias=config.use_bias)
        self.conv1d = nn.Conv1d(d, d, config.conv_kernel, groups=d, padding=config.conv_kernel - 1,
                                bias=config.use_conv_bias)
        self.x_proj = nn.Linear(d, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, d, bias=True)
        # S4D-real initialisation, as transformers'; a loaded state dict replaces it.
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(d, 1))  # d n
        self.D = nn.Parameter(torch.ones(d))
        self.out_proj = nn.Linear(d, h, bias=config.use_bias)

    def _scan_inputs(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, conv: Callable
                     ) -> tuple[torch.Tensor, ...]:
        """Projections and convolution before the scan, in either layout (positions and batch first or
        second; ``conv`` matches the layout): x, gate, time_step, B, C, A."""
        n, rank = self.ssm_state_size, self.time_step_rank
        hidden_states = mask_padding(hidden_states, attention_mask)  # b l h | l b h
        x, gate = self.in_proj(hidden_states).chunk(2, dim=-1)  # b l d, b l d
        x = F.silu(conv(x, self.conv1d.weight, self.conv1d.bias))  # b l d
        x = mask_padding(x, attention_mask)  # b l d
        time_step, B, C = torch.split(self.x_proj(x), [rank, n, n], dim=-1)  # b l r, b l n, b l n
        A = -torch.exp(self.A_log.float())  # d n
        return x, gate, time_step, B, C, A

    def _scan_output(self, y: torch.Tensor, x: torch.Tensor, gate: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Skip connection, gate and output projection after the scan (float32 y), in either layout."""
        y = y + x.float() * self.D.float()  # b l d    skip
        y = y * F.silu(gate.float())  # b l d    gate
        return self.out_proj(y.to(dtype))  # b l h

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[b, l, h] → [b, l, h]; attention_mask [b, l] (1 at tokens) zeroes padding where transformers does."""
        dtype = hidden_states.dtype
        x, gate, time_step, B, C, A = self._scan_inputs(hidden_states, attention_mask, causal_depthwise_conv)
        if x.is_cuda and mamba_ssm_available():  # the fused kernel, in its [b, d, l] layout
            delta = self.dt_proj(time_step).transpose(1, 2)  # b d l    (softplus in the kernel)
            y = selective_scan(x.transpose(1, 2), delta, A, B.transpose(1, 2), C.transpose(1, 2),
                               D=self.D.float(), z=gate.transpose(1, 2), delta_softplus=True)  # b d l
            return self.out_proj(y.transpose(1, 2).to(dtype))  # b l h
        delta = F.softplus(self.dt_proj(time_step).float())  # b l d    Δ = softplus(W t + bias)
        return self._scan_output(scan_channels_last(x, delta, A, B, C), x, gate, dtype)  # b l h

    def infer(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``forward`` without autograd, time-major: [l, b, h] → [l, b, h], attention_mask [l, b] or None.

        The same operations as the CPU path of ``forward`` in the same order, so the same numbers; the
        layout lets the convolution and the scan work on contiguous runs of positions
        (``causal_depthwise_conv_time_major``, ``scan.scan_time_major``) and skips their copies.
        """
        dtype = hidden_states.dtype
        x, gate, time_step, B, C, A = self._scan_inputs(hidden_states, attention_mask,
                                                        causal_depthwise_conv_time_major)
        delta = F.softplus(self.dt_proj(time_step).float())  # l b d    Δ = softplus(W t + bias)
        return self._scan_output(scan_time_major(x, delta, A, B, C), x, gate, dtype)  # l b h


class Block(nn.Module):
    """Pre-norm residual block: x + mixer(norm(x)), the residual kept in float32 as transformers does."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.residual_in_fp32 = config.residual_in_fp32
        self.norm = RMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.mixer = Mixer(config)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        residual = hidden_states.float() if self.residual_in_fp32 else hidden_states
        mixed = self.mixer(self.norm(hidden_states.to(self.norm.weight.dtype)), attention_mask)  # b l h
        return residual + mixed

    def infer(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``forward`` time-major and without autograd: [l, b, h], attention_mask [l, b] (see ``Mixer.infer``)."""
        residual = hidden_states.float() if self.residual_in_fp32 else hidden_states
        mixed = self.mixer.infer(self.norm(hidden_states.to(self.norm.weight.dtype)), attention_mask)  # l b h
        return residual + mixed


class LightMambaModel(nn.Module):
    """``MambaModel`` for whole sequences: embeddings (or inputs_embeds) → blocks → final RMSNorm."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([Block(config) for _ in range(config.num_layers)])
        self.norm_f = RMSNorm(config.hidden_size, config.layer_norm_epsilon)

    def forward(self, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, use_cache: bool = False, **_ignored: object
                ) -> BackboneOutput:
        """Same call as ``MambaModel(...)``: ids [b, l] or embeddings [b, l, h], mask [b, l] (1 at tokens)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        if use_cache:
            raise ValueError("the light Mamba backbone reads whole sequences; it keeps no cache")
        hidden_states = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds  # b l h
        if not torch.is_grad_enabled() and not (hidden_states.is_cuda and mamba_ssm_available()):
            return BackboneOutput(self._infer(hidden_states, attention_mask))
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_mask)  # b l h
        return BackboneOutput(self.norm_f(hidden_states))

    def _infer(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """The blocks in the time-major layout (tagging on a CPU): [b, l, h] → [b, l, h] (a transposed view).

        One transposition in and one out instead of a copy or two per mixer; a mask without padding is
        dropped (multiplying by it changes nothing).
        """
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            mask = attention_mask.t().to(hidden_states.dtype)  # l b    (0/1 in the activations' dtype)
        hidden_states = hidden_states.transpose(0, 1).contiguous()  # l b h
        for layer in self.layers:
            hidden_states = layer.infer(hidden_states, mask)  # l b h
        return self.norm_f(hidden_states).transpose(0, 1)  # b l h
