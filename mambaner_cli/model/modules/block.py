"""The Mamba block and a stack of them: the one implementation that both trains and tags.

Glossary (as in ops/scan.py): b sentences, l positions, h = hidden_size, d = expand * h SSM channels,
n = state_size, r = the rank of Δ's projection, K = conv_kernel.

Parameter names and shapes are transformers' ``MambaModel``'s, so a pretrained Hugging Face Mamba
checkpoint loads into :class:`MambaStack` by name (models/pretrained.py) and the shipped models' weights
load unchanged::

    embeddings.weight                              [vocab, h]   (the scratch tagger feeds embeddings: unused)
    layers.{i}.norm.weight                         [h]          RMSNorm before the mixer
    layers.{i}.mixer.in_proj.weight (.bias)        [2d, h]      x and the gate z
    layers.{i}.mixer.conv1d.weight, .bias          [d, 1, K], [d]   causal depthwise convolution
    layers.{i}.mixer.x_proj.weight                 [r + 2n, d]  Δ (rank r), B and C
    layers.{i}.mixer.dt_proj.weight, .bias         [d, r], [d]
    layers.{i}.mixer.A_log, layers.{i}.mixer.D     [d, n], [d]
    layers.{i}.mixer.out_proj.weight (.bias)       [h, d]
    norm_f.weight                                  [h]

Two explicit entry points, never chosen behind the caller's back:

* ``forward`` — differentiable, batch-major [b, l, ·] (training; the CPU scan has a hand-written
  backward). On CUDA with mamba-ssm installed, its kernels: the fused block kernel while training
  without padding, the fused scan otherwise.
* ``infer`` — no autograd, for tagging: on a CPU the same operations in the same order in a time-major
  [l, b, ·] layout (the convolution and the scan then work on contiguous runs of positions, and two
  copies per mixer are saved), so the same numbers; on CUDA it is ``forward`` without a graph.

Computing in float32 as transformers does: RMSNorm statistics, the scan, the residual stream.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mambaner_cli.model.ops.conv import causal_depthwise_conv, infer_conv_silu
from mambaner_cli.model.ops.matmul import BFloat16Weights, linear_bfloat16, use_bfloat16
from mambaner_cli.model.ops.scan import (
    infer_scan,
    mamba_ssm_available,
    scan_channels_last,
    selective_scan,
)

try:  # mamba-ssm's fused in_proj-output → conv → scan → out_proj kernel (CUDA only, optional extra)
    import causal_conv1d  # noqa: F401  (the fused kernel calls its convolution: a partial install skips it)
    from mamba_ssm.ops.selective_scan_interface import mamba_inner_fn as _mamba_inner_fn
except (ImportError, OSError):  # OSError: a build that does not match the installed CUDA/torch
    _mamba_inner_fn = None


@dataclass(frozen=True)
class BackboneConfig:
    """The shape of a Mamba stack and how it is initialised: transformers' ``MambaConfig`` fields and
    defaults, so that a seed gives the weights a transformers ``MambaModel`` of this shape gets."""

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
    # initialisation (Mamba's: Gu & Dao 2023, section 3.6 and their reference code)
    initializer_range: float = 0.1  # std of the normal draw for linear and embedding weights
    time_step_init_scheme: str = "random"  # dt_proj.weight: uniform ±scale/sqrt(r) ("random") or constant
    time_step_scale: float = 1.0
    time_step_min: float = 0.001  # initial Δ log-uniform in [min, max], floored
    time_step_max: float = 0.1
    time_step_floor: float = 1e-4
    rescale_prenorm_residual: bool = False

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
            raise ValueError(f"the Mamba block implements hidden_act='silu' only, not {config.hidden_act!r}")
        return cls(hidden_size=config.hidden_size, num_layers=config.num_hidden_layers,
                   state_size=config.state_size, expand=config.expand, conv_kernel=config.conv_kernel,
                   vocab_size=config.vocab_size, time_step_rank=int(config.time_step_rank),
                   layer_norm_epsilon=config.layer_norm_epsilon, use_bias=config.use_bias,
                   use_conv_bias=config.use_conv_bias, residual_in_fp32=config.residual_in_fp32,
                   initializer_range=config.initializer_range,
                   time_step_init_scheme=config.time_step_init_scheme, time_step_scale=config.time_step_scale,
                   time_step_min=config.time_step_min, time_step_max=config.time_step_max,
                   time_step_floor=config.time_step_floor,
                   rescale_prenorm_residual=config.rescale_prenorm_residual)


class RMSNorm(nn.Module):
    """x / rms(x) * weight, the statistics in float32 (transformers' ``MambaRMSNorm``)."""

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
    """Zero the padded positions (mask 1 at tokens, in the activations' layout), as transformers does."""
    if mask is None:
        return hidden_states
    return (hidden_states * mask[..., None]).to(hidden_states.dtype)  # b l k | l b k


def _conv_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, mask: torch.Tensor | None
               ) -> torch.Tensor:
    """silu(causal conv) with padding zeroed, [b, l, d]: ``forward``'s (differentiable) convolution step."""
    return mask_padding(F.silu(causal_depthwise_conv(x, weight, bias)), mask)  # b l d


class Mixer(nn.Module):
    """The selective-SSM mixer of one Mamba block (Gu & Dao 2023, Algorithm 2 and figure 3)."""

    # The projections ``infer`` multiplies in bfloat16 when $MAMBANER_MATMUL asks (ops/matmul.py): those
    # where it pays, measured on one thread at the shipped shape (h 128, d 256, 800 positions; two runs of
    # benchmarks/bench_matmul.py): in_proj 1.0-1.5 → 0.57-0.6 ms, out_proj 0.5-0.9 → 0.3-0.4 ms, x_proj
    # 0.2-0.32 → 0.16-0.23 ms; not dt_proj (r = 8 inputs: 0.05-0.11 → 0.06-0.12 ms, the casts cost
    # more than the product saves).
    BFLOAT16_PROJECTIONS = ("in_proj", "x_proj", "out_proj")

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        h, d, n, r = config.hidden_size, config.intermediate_size, config.state_size, config.rank
        self.ssm_state_size, self.time_step_rank = n, r
        # Built in transformers' order, so that a seed draws the same initial weights (see MambaStack).
        self.conv1d = nn.Conv1d(d, d, config.conv_kernel, groups=d, padding=config.conv_kernel - 1,
                                bias=config.use_conv_bias)
        self.in_proj = nn.Linear(h, 2 * d, bias=config.use_bias)
        self.x_proj = nn.Linear(d, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, d, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(d, 1))  # d n
        self.D = nn.Parameter(torch.ones(d))
        self.out_proj = nn.Linear(d, h, bias=config.use_bias)
        self._bf16_weights = BFloat16Weights()  # infer's bfloat16 copies: a plain attribute, not state

    @torch.no_grad()
    def reset_parameters(self, config: BackboneConfig) -> None:
        """Mamba's initialisation, with transformers' draws in transformers' order: every linear and
        convolution weight normal(0, initializer_range) first (the later steps overwrite some of those
        draws; they are kept so that a seed still gives the weights the shipped models started from),
        then S4D-real A (A_n = n), D = 1, dt_proj's weight uniform ±scale/sqrt(r), its bias the inverse
        softplus of a log-uniform Δ in [time_step_min, time_step_max], and Kaiming-uniform conv1d and
        out_proj weights (out_proj scaled by 1/sqrt(layers) with rescale_prenorm_residual)."""
        for linear in (self.conv1d, self.in_proj, self.x_proj, self.dt_proj, self.out_proj):
            nn.init.normal_(linear.weight, mean=0.0, std=config.initializer_range)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
        d, n = config.intermediate_size, config.state_size
        self.A_log.copy_(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).expand(d, -1))  # d n
        self.D.fill_(1.0)
        dt_init_std = config.rank ** -0.5 * config.time_step_scale
        if config.time_step_init_scheme == "constant":
            nn.init.constant_(self.dt_proj.weight, dt_init_std)
        elif config.time_step_init_scheme == "random":
            nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
        log_min, log_max = math.log(config.time_step_min), math.log(config.time_step_max)
        dt = torch.exp(torch.rand(d) * (log_max - log_min) + log_min).clamp(min=config.time_step_floor)  # d
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # d    softplus⁻¹(Δ)
        nn.init.kaiming_uniform_(self.conv1d.weight, a=math.sqrt(5))
        if self.conv1d.bias is not None:
            nn.init.zeros_(self.conv1d.bias)
        nn.init.kaiming_uniform_(self.out_proj.weight, a=math.sqrt(5))
        if config.rescale_prenorm_residual:
            self.out_proj.weight /= math.sqrt(config.num_layers)

    def _project(self, name: str, x: torch.Tensor, bfloat16: bool = False) -> torch.Tensor:
        """``self.<name>(x)``; with ``bfloat16`` (``infer`` only) and a projection of
        ``BFLOAT16_PROJECTIONS``, the product in bfloat16 (ops/matmul.py). Only a plain float32 nn.Linear:
        reading a LoRA-wrapped projection's weight would skip its adapter."""
        linear = getattr(self, name)
        if bfloat16 and name in self.BFLOAT16_PROJECTIONS and type(linear) is nn.Linear \
                and linear.weight.dtype == torch.float32:
            # setdefault: a Mixer unpickled from before the cache existed has none yet
            weights = self.__dict__.setdefault("_bf16_weights", BFloat16Weights())
            return linear_bfloat16(x, weights.get(name, linear.weight), linear.bias)
        return linear(x)

    def _scan_inputs(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None,
                     conv_silu: Callable, bfloat16: bool = False) -> tuple[torch.Tensor, ...]:
        """Projections and convolution before the scan, in either layout (positions and batch first or
        second; ``conv_silu(x, weight, bias, mask)``, silu(conv) with padding zeroed, matches the layout):
        x, gate, time_step, B, C, A. ``bfloat16``: see ``_project``."""
        n, rank = self.ssm_state_size, self.time_step_rank
        hidden_states = mask_padding(hidden_states, attention_mask)  # b l h | l b h
        x, gate = self._project("in_proj", hidden_states, bfloat16).chunk(2, dim=-1)  # b l d, b l d
        x = conv_silu(x, self.conv1d.weight, self.conv1d.bias, attention_mask)  # b l d
        projected = self._project("x_proj", x, bfloat16)  # b l r+2n
        time_step, B, C = torch.split(projected, [rank, n, n], dim=-1)  # b l r, b l n, b l n
        A = -torch.exp(self.A_log.float())  # d n
        return x, gate, time_step, B, C, A

    def _scan_output(self, y: torch.Tensor, x: torch.Tensor, gate: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Skip connection, gate and output projection after the scan (float32 y), in either layout."""
        y = y + x.float() * self.D.float()  # b l d    skip
        y = y * F.silu(gate.float())  # b l d    gate
        return self.out_proj(y.to(dtype))  # b l h

    def _plain_linears(self) -> bool:
        """Whether the projections are plain nn.Linear: the fused kernel reads their weights directly, which
        would skip a LoRA adapter wrapped around one of them."""
        return all(type(getattr(self, name)) is nn.Linear for name in ("in_proj", "x_proj", "dt_proj", "out_proj"))

    def _fused_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """mamba-ssm's fused block kernel ([b, 2d, l] layout): training on CUDA without padding."""
        A = -torch.exp(self.A_log.float())  # d n
        projected = self.in_proj(hidden_states).transpose(1, 2)  # b 2d l
        return _mamba_inner_fn(projected, self.conv1d.weight, self.conv1d.bias, self.x_proj.weight,
                               self.dt_proj.weight, self.out_proj.weight,
                               self.out_proj.bias.float() if self.out_proj.bias is not None else None,
                               A, None, None, self.D.float(), delta_bias=self.dt_proj.bias.float(),
                               delta_softplus=True)  # b l h

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[b, l, h] → [b, l, h], differentiable; attention_mask [b, l] (1 at tokens) zeroes padding."""
        dtype = hidden_states.dtype
        if hidden_states.is_cuda and _mamba_inner_fn is not None and self.training and attention_mask is None \
                and self._plain_linears():
            return self._fused_forward(hidden_states)
        x, gate, time_step, B, C, A = self._scan_inputs(hidden_states, attention_mask, _conv_silu)
        if x.is_cuda and mamba_ssm_available():  # the fused scan, in its [b, d, l] layout
            delta = self.dt_proj(time_step).transpose(1, 2)  # b d l    (softplus in the kernel)
            y = selective_scan(x.transpose(1, 2), delta, A, B.transpose(1, 2), C.transpose(1, 2),
                               D=self.D.float(), z=gate.transpose(1, 2), delta_softplus=True)  # b d l
            return self.out_proj(y.transpose(1, 2).to(dtype))  # b l h
        delta = F.softplus(self.dt_proj(time_step).float())  # b l d    Δ = softplus(W t + bias)
        return self._scan_output(scan_channels_last(x, delta, A, B, C), x, gate, dtype)  # b l h

    def infer(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``forward``'s CPU path without autograd, time-major: [l, b, h] → [l, b, h], attention_mask [l, b]
        or None. The same operations in the same order, so the same numbers; with $MAMBANER_KERNELS=numba,
        numba's kernels, which agree within float32 rounding (tests/test_scan.py, tests/test_block.py).
        With $MAMBANER_MATMUL=bfloat16 (or auto on a CPU with native bfloat16), the projections of
        ``BFLOAT16_PROJECTIONS`` multiply in bfloat16 (ops/matmul.py): close to, not equal to, float32."""
        dtype = hidden_states.dtype
        bfloat16 = use_bfloat16(hidden_states)
        x, gate, time_step, B, C, A = self._scan_inputs(hidden_states, attention_mask, infer_conv_silu, bfloat16)
        delta = F.softplus(self._project("dt_proj", time_step, bfloat16).float())  # l b d    Δ = softplus(Wt + b)
        # The scan with _scan_output's skip and gate (one pass in the numba kernel: ops/numba_infer.py).
        y = infer_scan(x, delta, A, B, C, self.D, gate).to(dtype)  # l b d
        return self._project("out_proj", y, bfloat16)  # l b h


class Block(nn.Module):
    """Pre-norm residual block: x + mixer(norm(x)), the residual kept in float32 as transformers does."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.residual_in_fp32 = config.residual_in_fp32
        self.norm = RMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.mixer = Mixer(config)

    def _residual(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states.float() if self.residual_in_fp32 else hidden_states

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        mixed = self.mixer(self.norm(hidden_states.to(self.norm.weight.dtype)), attention_mask)  # b l h
        return self._residual(hidden_states) + mixed

    def infer(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``forward`` time-major and without autograd: [l, b, h], attention_mask [l, b] (``Mixer.infer``)."""
        mixed = self.mixer.infer(self.norm(hidden_states.to(self.norm.weight.dtype)), attention_mask)  # l b h
        return self._residual(hidden_states) + mixed


class MambaStack(nn.Module):
    """Token embeddings (for token ids) → Mamba blocks → final RMSNorm, over whole sequences.

    The scratch tagger feeds its own token features (``forward(hidden_states)``); a pretrained language
    model embeds its subword ids first (``embed``). No step-by-step generation: a tagger reads whole
    sentences.
    """

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([Block(config) for _ in range(config.num_layers)])
        self.norm_f = RMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The initial weights transformers' ``MambaModel`` gets from the same seed (its post-init pass:
        embeddings, then each block's mixer in order)."""
        nn.init.normal_(self.embeddings.weight, mean=0.0, std=self.config.initializer_range)
        for layer in self.layers:
            layer.norm.weight.fill_(1.0)
            layer.mixer.reset_parameters(self.config)
        self.norm_f.weight.fill_(1.0)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token ids [b, l] → embeddings [b, l, h]."""
        return self.embeddings(input_ids)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[b, l, h] → [b, l, h], differentiable; attention_mask [b, l] (1 at tokens, 0 at padding)."""
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_mask)  # b l h
        return self.norm_f(hidden_states)

    @torch.no_grad()
    def infer(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``forward`` without autograd, for tagging: [b, l, h] → [b, l, h] (on a CPU a transposed view).

        On a CPU the blocks run time-major: one transposition in and one out instead of a copy or two per
        mixer, and a mask without padding is dropped (multiplying by it changes nothing). On CUDA with
        mamba-ssm, ``forward``'s kernels.
        """
        if hidden_states.is_cuda and mamba_ssm_available():
            return self.forward(hidden_states, attention_mask)
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            mask = attention_mask.t().to(hidden_states.dtype)  # l b    (0/1 in the activations' dtype)
        hidden_states = hidden_states.transpose(0, 1).contiguous()  # l b h
        for layer in self.layers:
            hidden_states = layer.infer(hidden_states, mask)  # l b h
        return self.norm_f(hidden_states).transpose(0, 1)  # b l h
