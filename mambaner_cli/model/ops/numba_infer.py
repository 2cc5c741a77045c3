"""The Mamba mixer's inference kernels compiled with numba: the selective scan (with the block's skip and
gate) and the causal convolution (with its SiLU), each one pass over the activations, time-major.

They compute what ``scan.scan_time_major`` (+ ``Mixer._scan_output``'s skip and gate) and
``conv.causal_depthwise_conv_time_major`` (+ SiLU) compute, which stay the reference and the fallback:
``scan.infer_scan`` and ``conv.infer_conv_silu`` call these when ``$MAMBANER_KERNELS`` is ``numba`` (as
``auto``, the default, makes it for the length of a long run: see ``KERNELS_ENV``) and the tensors are on
the CPU and not float64. Shapes: the glossary of ``scan.py`` (b, l, d, n), time-major [l, b, ·].

Why they are faster (the scan with skip and gate 2-3x: its share of ``python -m benchmarks.bench_infer``'s
breakdown fell from 39% to 17%): the PyTorch scan writes decay and drive buffers of [chunk, b, n, d] floats, reads them back in one
``addcmul_`` per position and once more for the read-out matmul, then the skip, SiLU and gate are four
more passes; here each sentence's state [n, d] stays in L1 while the positions run, Ā, ΔBu, the update
(Gu & Dao 2023, eq. 2a), the read-out (2b), skip and gate are one loop over d, and only inputs and
outputs go through memory. Likewise the convolution's four taps, bias, SiLU and padding mask.

exp is computed as 2^(x log2 e) by Cephes' ``exp2f`` (a degree-6 polynomial on [-0.5, 0.5] plus the
exponent written into the float's bits, relative error about 1e-7) instead of ``math.exp``: numba
without Intel's SVML calls the scalar libm ``expf`` once per element, which costs more than the whole
PyTorch scan; the polynomial is plain arithmetic that LLVM vectorises. Exponents are clamped to
[-126, 127]: a decay of 2^-126 ≈ 1.2e-38 instead of 0 has already reset the state, and SiLU's
x / (1 + 2^127) is 0 to float precision as x / (1 + inf) is.

numba is imported on first use (ops/_numba_kernels.py), not with this module, so that nothing pays for
it unless it is asked for. ``cache=True`` keeps the compiled kernels on disk (next to this file, or numba's per-user cache
when the package folder is read-only), so only the first run on a machine compiles them (10-20 s on a
busy 2-core machine); later runs load them (numba's import included: 1.6-1.8 s on the busy machine, where importing torch
took 3.5 s).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import os
from collections.abc import Iterator
from types import ModuleType

import numpy.typing as npt
import torch

# Which inference kernels ``scan.infer_scan`` and ``conv.infer_conv_silu`` run on the CPU: "torch" (the
# PyTorch reference), "numba" (these), or "auto" (the default): these for a run that tags enough text to
# repay loading them, where numba is installed (``kernels_for_run``), else PyTorch's. Loading costs about
# 0.7 s and 60-120 MB per process (README, Performance), so a short note keeps PyTorch's kernels (2.6-2.7 s
# end to end), while a long run saves 13 % of its tagging loop.
KERNELS_ENV = "MAMBANER_KERNELS"
KERNELS = ("auto", "torch", "numba")
# "auto" turns to numba from this much input (bytes of the input files): about 460 PubTator abstracts with
# their annotations. An estimate, not tuned by measurement: the loop's saving there (13 % of about 6 s of CPU
# a MiB: 21 s for the 3.4 MB of the 1,500 BC5CDR abstracts) passes the 0.7 s of loading, which the workers
# do while the parent reads the first documents.
AUTO_NUMBA_BYTES = 1 << 20


@functools.cache
def _kernels() -> ModuleType | None:
    """The compiled kernels (``scan``, ``conv_silu``: ops/_numba_kernels.py), or None without numba."""
    try:
        from mambaner_cli.model.ops import _numba_kernels
    except ImportError:
        return None
    return _numba_kernels


def numba_available() -> bool:
    """Whether numba can be imported (it then compiles the kernels, once per machine)."""
    return _kernels() is not None


def numba_installed() -> bool:
    """Whether numba is there to import (found without importing it)."""
    return importlib.util.find_spec("numba") is not None


def kernels_setting() -> str:
    """``$MAMBANER_KERNELS`` (default ``auto``); RuntimeError, with the values, for anything else."""
    choice = os.environ.get(KERNELS_ENV, "auto")
    if choice not in KERNELS:
        raise RuntimeError(f"${KERNELS_ENV} is {choice!r}: set it to auto (the default), torch or numba.")
    return choice


def use_numba(x: torch.Tensor) -> bool:
    """Whether the inference path should run the compiled kernels on ``x``: ``$MAMBANER_KERNELS`` is
    ``numba`` (``auto`` is PyTorch's outside a run that chose numba) and ``x`` a CPU tensor but not float64
    (which keeps the PyTorch path's precision). RuntimeError, with the fix, when numba is asked for but
    cannot be imported."""
    if kernels_setting() != "numba" or x.device.type != "cpu" or x.dtype == torch.float64:
        return False
    _required()
    return True


@contextlib.contextmanager
def kernels_for_run(input_bytes: int, on_cpu: bool) -> Iterator[str]:
    """For the length of a run that reads ``input_bytes`` of input: ``auto`` resolved — to ``numba`` when
    the run tags on the CPU, reads at least ``AUTO_NUMBA_BYTES`` and numba is installed, else ``torch`` —
    and written to ``$MAMBANER_KERNELS``, where the run's worker processes read it (forked or started by
    the fork server, which passes the parent's environment); restored afterwards. Gives the kernels chosen.
    ``torch`` and ``numba`` stay as they are."""
    choice = kernels_setting()
    if choice != "auto":
        yield choice
        return
    chosen = "numba" if on_cpu and input_bytes >= AUTO_NUMBA_BYTES and numba_installed() else "torch"
    before = os.environ.get(KERNELS_ENV)
    os.environ[KERNELS_ENV] = chosen
    try:
        yield chosen
    finally:
        if before is None:
            os.environ.pop(KERNELS_ENV, None)
        else:
            os.environ[KERNELS_ENV] = before


def preload() -> None:
    """Import the compiled kernels now if this process will run them (a worker, before its first chunk
    arrives: the import then overlaps the parent's reading instead of delaying the first batch)."""
    if kernels_setting() == "numba":
        _kernels()


def _channels(x: torch.Tensor) -> tuple[npt.NDArray, int]:
    """x [l, b, d] as a float32 array for a kernel, and the channel it starts at: a channel slice of a
    float32 [l, b, k] block that fills its whole storage (``Mixer``'s halves of in_proj's output) is
    read in place, anything else copied. (By storage, not ``_base``: inference-mode views have none.)"""
    length, batch, channels = x.shape
    width, start = x.stride(1), x.storage_offset()
    if (x.dtype == torch.float32 and x.stride(2) == 1 and x.stride(0) == batch * width
            and 0 <= start <= width - channels
            and x.untyped_storage().nbytes() == length * batch * width * x.element_size()):
        block = torch.as_strided(x.detach(), (length, batch, width), (batch * width, width, 1), 0)  # l b k
        return block.numpy(), start
    return x.detach().float().contiguous().numpy(), 0


def _required() -> ModuleType:
    kernels = _kernels()
    if kernels is None:
        raise RuntimeError("the compiled inference kernels need numba. To fix: pip install numba")
    return kernels


def scan_time_major_numba(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                          C: torch.Tensor, D: torch.Tensor | None = None, z: torch.Tensor | None = None
                          ) -> torch.Tensor:
    """``scan.scan_time_major`` by the compiled kernel, in float32 on the CPU: u, delta [l, b, d], A [d, n],
    B, C [l, b, n] → C·h [l, b, d]; with D [d] and the gate z [l, b, d] (both or neither), the gated
    output (C·h + D u) · silu(z) that ``Mixer._scan_output`` computes from it, in the same pass.
    RuntimeError when numba is missing (check ``numba_available`` first). Not differentiable: call it
    without autograd."""
    kernels = _required()
    if (D is None) != (z is None):
        raise ValueError("pass both D and z (the gated output) or neither")
    A2 = (A.detach().float() * math.log2(math.e)).t().contiguous()  # n d    A log2 e
    u, delta, B, C = (t.detach().float().contiguous() for t in (u, delta, B, C))  # (numpy() wants no grad)
    gated = z is not None
    D = D.detach().float().contiguous() if gated else u.new_zeros(u.shape[2])  # d
    gate, gate_from = _channels(z) if gated else (u.numpy(), 0)  # l b ≥d    (not read without the gate)
    y = u.new_empty(u.shape)  # l b d
    if u.numel():
        kernels.scan(u.numpy(), delta.numpy(), A2.numpy(), B.numpy(), C.numpy(), D.numpy(), gate, gate_from, gated,
                     y.numpy())
    return y


def conv_silu_time_major_numba(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                               mask: torch.Tensor | None = None) -> torch.Tensor:
    """silu(``conv.causal_depthwise_conv_time_major``(x, weight, bias)), times ``mask`` [l, b] if given, by
    the compiled kernel, in float32: x [l, b, d] (a view of the first or second half of in_proj's output
    is read in place), weight [d, 1, K] as in ``nn.Conv1d`` → [l, b, d] float32. RuntimeError without
    numba."""
    kernels = _required()
    length, batch, channels = x.shape
    source, channels_from = _channels(x)
    taps = weight.detach()[:, 0, :].t().float().contiguous()  # K d
    conv_bias = bias.detach().float().contiguous() if bias is not None else x.new_zeros(channels, dtype=torch.float32)  # d
    scale = x.new_ones(length, batch, dtype=torch.float32) if mask is None else mask.detach().float().contiguous()  # l b
    y = x.new_empty(length, batch, channels, dtype=torch.float32)  # l b d
    if y.numel():
        kernels.conv_silu(source, channels_from, taps.numpy(), conv_bias.numpy(), scale.numpy(), y.numpy())
    return y
