"""Matrix products of the Mamba mixer's CPU inference path in bfloat16: the policy and the product.

``Mixer.infer`` (modules/block.py) multiplies by its projections in bfloat16 when ``use_bfloat16`` says so:
the input rounded to bfloat16, the weight's bfloat16 copy (``BFloat16Weights``: made once, off the state
dict), float32 accumulation inside oneDNN, the product rounded to bfloat16 and widened back to float32,
the bias added in float32. ``forward`` (training) never does; float32 stays the reference that the
bfloat16 path is tested against (tests/test_matmul.py).

Why: the projections are the largest single cost of `mambaner tag` on one thread (20-35 % of the
tagging loop), and a CPU with AVX512-BF16 or AMX-BF16 multiplies bfloat16 at twice float32's rate:
in_proj [800, 128] → 512 took 1.0-1.5 ms in float32 and 0.55-0.6 ms in bfloat16 with the casts,
out_proj [800, 256] → 128 0.5-0.9 and 0.3-0.4 ms (benchmarks/bench_matmul.py). The tagging loop of the
default model on BC5CDR devel: 7.1 → 5.9 s, with $MAMBANER_KERNELS=numba 6.1 → 4.4 s
(`python -m benchmarks.bench_tag_loop --rounds 3`). Without native support oneDNN emulates bfloat16 and
is slower than float32, hence ``auto``'s CPU check.

The price is precision: a bfloat16 has 8 significant bits, so each product is off by a few parts in a
thousand of its scale (float32: about 1e-7). On the devel sets this moves few tags, but F1 by more than the
±0.05 allowed on some corpora (README, Performance: NCBI −0.072, BC2GM −0.122, GNormPlus +0.189 for the
default model's train-only run; `benchmarks/choose_convention.py` under each setting).
PyTorch 2.13 has no CPU kernel that multiplies bfloat16 into a float32 output (``torch.mm``'s
``out_dtype`` is CUDA only), so the product's own rounding to bfloat16 stays.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
import torch.nn.functional as F

# How ``Mixer.infer`` multiplies by its projections on the CPU: "float32" (the default, the reference),
# "bfloat16" (on every CPU, emulated where the CPU lacks it: for tests and measurements), or "auto"
# (bfloat16 where the CPU computes it natively, else float32). Read at every call, as $MAMBANER_KERNELS
# is (ops/numba_infer.py), so a test or a long-running process can switch it. float32 by default until
# the devel scores under bfloat16 are accepted (see the module docstring).
MATMUL_ENV = "MAMBANER_MATMUL"
MATMUL_CHOICES = ("float32", "bfloat16", "auto")

# /proc/cpuinfo flags of x86 CPUs that multiply bfloat16 in hardware (Cooper Lake, Sapphire Rapids and
# later; Zen 4 and later): oneDNN then runs bfloat16 products at about twice float32's rate.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.cache
def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (a flag of ``NATIVE_BF16_FLAGS`` in /proc/cpuinfo).

    Not ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``: it is true on any AVX512 CPU, where oneDNN
    emulates bfloat16 and is slower than float32. False where /proc/cpuinfo cannot be read (macOS,
    Windows): ``auto`` then keeps float32.
    """
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):  # every core lists the same flags: the first line is enough
            return not NATIVE_BF16_FLAGS.isdisjoint(line.partition(":")[2].split())
    return False


def matmul_choice() -> str:
    """``$MAMBANER_MATMUL``, checked: RuntimeError, with the fix, for a value not in ``MATMUL_CHOICES``."""
    choice = os.environ.get(MATMUL_ENV, "float32")
    if choice not in MATMUL_CHOICES:
        raise RuntimeError(f"${MATMUL_ENV} is {choice!r}: set it to float32 (the default), bfloat16 or auto.")
    return choice


def use_bfloat16(x: torch.Tensor) -> bool:
    """Whether the inference path should multiply ``x`` by its projections in bfloat16: only float32
    tensors on the CPU (float64 asks for precision; on CUDA the path is ``forward``'s, with its own
    kernels), and then with ``bfloat16`` always, with ``auto`` where ``native_bfloat16()``."""
    choice = matmul_choice()
    if choice == "float32" or x.device.type != "cpu" or x.dtype != torch.float32:
        return False
    return choice == "bfloat16" or native_bfloat16()


# oneDNN, which runs PyTorch's bfloat16 products on the CPU, compiles a kernel for every new shape (about
# 6 ms each, measured) and keeps 1,024 of them: with as many row counts as the tagger has batch shapes
# (sentences x length), the compiling cost more than the products saved, and `mambaner tag` got slower.
# Rows are therefore multiplied in blocks of ROW_BLOCK, the last one padded to a multiple of ROW_STEP: at
# most ROW_BLOCK / ROW_STEP = 16 shapes per weight, at most 63 padded rows per product. 400 random row
# counts x the three projections, first and second pass (benchmarks/bench_matmul.py): float32 2.2 and
# 2.5 s, bfloat16 of whole inputs 4.6 and 2.6 s, in blocks 1.3 and 1.1 s. (Blocks of 512/64, 1024/64
# and 2048/128 rows were within noise of each other; 1024/64 was the best.)
ROW_BLOCK = 1024
ROW_STEP = 64


def linear_bfloat16(x: torch.Tensor, weight_bf16: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` with x and the weight in bfloat16: float32 x [..., i], the weight's
    bfloat16 copy [o, i], float32 bias [o] or None → float32 [..., o]. The bias is added after widening,
    in float32 (the shipped models' in_proj and out_proj have none; dt_proj's stays in float32). Rows go
    in blocks of fixed shapes (see ``ROW_BLOCK``); each row's product does not depend on the others."""
    inputs = x.shape[-1]
    rows = x.reshape(-1, inputs)  # m i
    y = torch.empty(rows.shape[0], weight_bf16.shape[0], dtype=torch.float32, device=x.device)  # m o
    for start in range(0, rows.shape[0], ROW_BLOCK):
        block = rows[start : start + ROW_BLOCK]  # k i
        count = block.shape[0]
        padded = min(ROW_BLOCK, -(-count // ROW_STEP) * ROW_STEP)
        if padded == count:
            block = block.to(torch.bfloat16)  # k i
        else:  # the cast writes into the padded block: no extra copy
            buffer = torch.empty(padded, inputs, dtype=torch.bfloat16, device=x.device)  # k' i
            buffer[:count] = block
            buffer[count:].zero_()  # (garbage could hold NaN or denormals: zeros cost nothing)
            block = buffer
        y[start : start + count] = F.linear(block, weight_bf16)[:count]  # k o    widened to float32 here
    if bias is not None:
        y.add_(bias)
    return y.view(*x.shape[:-1], weight_bf16.shape[0])  # ... o


class BFloat16Weights:
    """bfloat16 copies of float32 weights, made on first use and made again when a weight changes.

    Held in a plain attribute, not as buffers, so a module's state dict, saving and loading are the same
    with or without them. A weight counts as changed when its storage, device, shape or version counter
    differs: an optimizer step or ``load_state_dict`` bumps the version, ``.to()`` and replacing the
    weight change the storage. (Writes through ``weight.data`` bump no version: call ``clear`` after them.)
    """

    def __init__(self) -> None:
        self._copies: dict[str, tuple[tuple, torch.Tensor]] = {}

    @staticmethod
    def _key(weight: torch.Tensor) -> tuple:
        try:
            version = weight._version
        except RuntimeError:  # an inference-mode tensor has no version counter (nor in-place writes after)
            version = -1
        return weight.data_ptr(), weight.device, tuple(weight.shape), version

    def get(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        """The bfloat16 copy of ``weight`` (cached under ``name``)."""
        key = self._key(weight)
        cached = self._copies.get(name)
        if cached is None or cached[0] != key:
            with torch.no_grad():
                cached = key, weight.detach().to(torch.bfloat16).contiguous()
            self._copies[name] = cached
        return cached[1]

    def clear(self) -> None:
        self._copies.clear()

    def __len__(self) -> int:
        return len(self._copies)
