"""A drop-in MambaMixer whose full-sequence forward runs through our selective scan.

transformers' ``MambaMixer`` falls back, without mamba_ssm, to a Python loop over positions that
autograd records step by step. ``FastMambaMixer`` computes the same function (same parameters, same
names, so any Mamba checkpoint loads unchanged) with ``scan.scan_channels_last`` on CPU, and with
mamba_ssm's fused kernels on CUDA when they are installed. With a cache (step-by-step generation)
it defers to the original forward: caching is not what a tagger needs and the original handles it.

The CPU path stays in the [b, l, channels] layout of the block's activations from in_proj to
out_proj: the causal depthwise convolution is done as K shifted multiply-adds instead of a
channels-first ``conv1d``, which saves two transposes of [b, l, d] per layer (each costs about as
much as a chunk of the scan).

One deliberate difference: ``dt_proj`` is called as a module, so a PEFT/LoRA adapter on it takes effect;
the original reads ``dt_proj.weight`` directly and silently skips such an adapter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.mamba.modeling_mamba import MambaMixer

from mambaner_cli.model.ops.conv import causal_depthwise_conv
from mambaner_cli.model.ops.scan import scan_channels_last, selective_scan

try:  # mamba_ssm's fused in_proj-output → conv → scan → out_proj kernel (CUDA only)
    from mamba_ssm.ops.selective_scan_interface import mamba_inner_fn as _mamba_inner_fn
except (ImportError, OSError):
    _mamba_inner_fn = None

try:  # lets accelerate's offloading hooks move conv1d/dt_proj weights we read directly (newer transformers)
    from transformers.integrations.accelerate import force_accelerate_hooks as _force_hooks
except ImportError:  # pragma: no cover - older transformers

    def _force_hooks(names: list[str]):  # same signature as transformers' decorator
        return lambda forward: forward


def _mask_padding(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Zero the padded positions, as transformers' ``apply_mask_to_padding_states`` does."""
    if attention_mask is None:
        return hidden_states
    return (hidden_states * attention_mask[:, :, None]).to(hidden_states.dtype)  # b l k


class FastMambaMixer(MambaMixer):
    """MambaMixer with a fast full-sequence forward; identical parameters and results."""

    @_force_hooks(["conv1d", "dt_proj"])
    def forward(
        self,
        hidden_states: torch.Tensor,
        cache: object | None = None,  # a transformers Cache; with one, the original forward runs
        attention_mask: torch.Tensor | None = None,
        **kwargs: object,
    ) -> torch.Tensor:
        if cache is not None or kwargs.get("cache_params") is not None:
            if cache is not None:
                kwargs["cache"] = cache
            return super().forward(hidden_states, attention_mask=attention_mask, **kwargs)
        if hidden_states.is_cuda and _mamba_inner_fn is not None:
            return self._cuda_forward(hidden_states, attention_mask)
        return self._channels_last_forward(hidden_states, attention_mask)

    def _channels_last_forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        dtype = hidden_states.dtype
        n, rank = self.ssm_state_size, self.time_step_rank
        hidden_states = _mask_padding(hidden_states, attention_mask)  # b l h
        x, gate = self.in_proj(hidden_states).chunk(2, dim=-1)  # b l d, b l d
        x = self.act(causal_depthwise_conv(x, self.conv1d.weight, self.conv1d.bias))  # b l d
        x = _mask_padding(x, attention_mask)  # b l d
        time_step, B, C = torch.split(self.x_proj(x), [rank, n, n], dim=-1)  # b l r, b l n, b l n
        delta = F.softplus(self.dt_proj(time_step).float())  # b l d    Δ = softplus(W t + bias)
        A = -torch.exp(self.A_log.float())  # d n
        y = scan_channels_last(x, delta, A, B, C)  # b l d    (float32)
        y = y + x.float() * self.D.float()  # b l d    skip
        y = y * F.silu(gate.float())  # b l d    gate
        return self.out_proj(y.to(dtype))  # b l h

    def _plain_linears(self) -> bool:
        """Whether the projections are plain nn.Linear (the fused kernel reads their weights directly)."""
        return all(
            type(getattr(self, name)) is nn.Linear for name in ("in_proj", "x_proj", "dt_proj", "out_proj")
        )

    def _cuda_forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """mamba_ssm's kernels, laid out as they expect ([b, d, l]); mirrors the original's CUDA path."""
        dtype = hidden_states.dtype
        n, rank = self.ssm_state_size, self.time_step_rank
        hidden_states = _mask_padding(hidden_states, attention_mask)  # b l h
        projected = self.in_proj(hidden_states).transpose(1, 2)  # b 2d l
        A = -torch.exp(self.A_log.float())  # d n
        if self.training and attention_mask is None and self._plain_linears():
            return _mamba_inner_fn(
                projected,
                self.conv1d.weight,
                self.conv1d.bias if self.use_conv_bias else None,
                self.x_proj.weight,
                self.dt_proj.weight,
                self.out_proj.weight,
                self.out_proj.bias.float() if self.use_bias else None,
                A,
                None,
                None,
                self.D.float(),
                delta_bias=self.dt_proj.bias.float(),
                delta_softplus=True,
            )
        x, gate = projected.chunk(2, dim=1)  # b d l, b d l
        x = self.act(self.conv1d(x)[..., : x.shape[-1]])  # b d l
        x = _mask_padding(x.transpose(1, 2), attention_mask)  # b l d
        time_step, B, C = torch.split(self.x_proj(x), [rank, n, n], dim=-1)  # b l r, b l n, b l n
        delta = self.dt_proj(time_step).transpose(1, 2)  # b d l    (bias included; softplus in the kernel)
        u, B, C = x.transpose(1, 2), B.transpose(1, 2), C.transpose(1, 2)  # b d l, b n l, b n l
        y = selective_scan(u, delta, A, B, C, D=self.D.float(), z=gate, delta_softplus=True)  # b d l
        return self.out_proj(y.transpose(1, 2).to(dtype))  # b l h


def use_fast_scan(model: nn.Module) -> nn.Module:
    """Swap every transformers ``MambaMixer`` in ``model`` (also inside PEFT wrappers) for ``FastMambaMixer``.

    In place, by changing the modules' class: parameters, buffers, names and hooks stay as they are,
    so checkpoints saved before or after load either way. Subclasses of MambaMixer are left alone (their
    forward may differ). Returns the model for chaining.
    """
    for module in model.modules():
        if type(module) is MambaMixer:
            module.__class__ = FastMambaMixer
    return model
