"""Tests for mambaner_cli.model.ops.matmul: $MAMBANER_MATMUL and the bfloat16 projections of ``Mixer.infer``.

float32 is the reference: the bfloat16 path must agree with it within bfloat16's rounding (8 significant
bits: a few parts in a thousand of each product's scale), leave the state dict alone, follow a weight
that changes, and never touch ``forward`` (training).
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from mambaner_cli.model.modules.block import BackboneConfig, MambaStack, Mixer
from mambaner_cli.model.ops import matmul
from mambaner_cli.model.ops.matmul import MATMUL_ENV, linear_bfloat16, use_bfloat16
from mambaner_cli.model.ops.numba_infer import KERNELS_ENV

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one torch thread on a shared CPU

CONFIG = BackboneConfig(hidden_size=24, num_layers=2, state_size=4, time_step_rank=3, use_bias=True)


@pytest.fixture(autouse=True)
def torch_kernels(monkeypatch):
    """The PyTorch scan, so that only the matrix products differ between the two paths."""
    monkeypatch.delenv(KERNELS_ENV, raising=False)


def seeded_stack(seed: int = 0) -> MambaStack:
    torch.manual_seed(seed)
    stack = MambaStack(CONFIG)
    with torch.no_grad():  # make every parameter matter: biases and norms are 0/1 at initialisation
        for parameter in stack.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return stack.eval()


def infer(module: nn.Module, x: torch.Tensor, monkeypatch, choice: str, mask: torch.Tensor | None = None
          ) -> torch.Tensor:
    monkeypatch.setenv(MATMUL_ENV, choice)
    with torch.no_grad():
        return module.infer(x, mask)


# ---------------------------------------------------------------- the policy


@pytest.mark.parametrize("value", ["fp32", "bf16", "BFLOAT16", ""])
def test_an_unknown_value_names_the_variable_and_the_choices(value, monkeypatch):
    monkeypatch.setenv(MATMUL_ENV, value)
    with pytest.raises(RuntimeError, match=r"\$MAMBANER_MATMUL.*float32.*bfloat16.*auto"):
        use_bfloat16(torch.zeros(2))


def test_float32_is_the_default(monkeypatch):
    monkeypatch.delenv(MATMUL_ENV, raising=False)
    monkeypatch.setattr(matmul, "native_bfloat16", lambda: True)
    assert not use_bfloat16(torch.zeros(2))


@pytest.mark.parametrize("native", [True, False])
def test_auto_follows_native_support_and_bfloat16_does_not(native, monkeypatch):
    monkeypatch.setattr(matmul, "native_bfloat16", lambda: native)
    monkeypatch.setenv(MATMUL_ENV, "auto")
    assert use_bfloat16(torch.zeros(2)) is native
    monkeypatch.setenv(MATMUL_ENV, "bfloat16")
    assert use_bfloat16(torch.zeros(2))
    monkeypatch.setenv(MATMUL_ENV, "float32")
    assert not use_bfloat16(torch.zeros(2))


@pytest.mark.parametrize("choice", ["auto", "bfloat16"])
def test_float64_and_other_dtypes_keep_their_precision(choice, monkeypatch):
    monkeypatch.setattr(matmul, "native_bfloat16", lambda: True)
    monkeypatch.setenv(MATMUL_ENV, choice)
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        assert not use_bfloat16(torch.zeros(2, dtype=dtype))


def test_auto_keeps_float32_on_cuda(monkeypatch):
    monkeypatch.setattr(matmul, "native_bfloat16", lambda: True)
    monkeypatch.setenv(MATMUL_ENV, "auto")
    assert not use_bfloat16(torch.zeros(2, device="meta"))  # any tensor off the CPU, CUDA or not


def test_native_support_reads_the_cpu_flags(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    real_path = matmul.Path
    monkeypatch.setattr(matmul, "Path", lambda path: cpuinfo if path == "/proc/cpuinfo" else real_path(path))
    for flags, native in (("fpu avx512f avx512bw", False), ("fpu avx512f avx512_bf16", True),
                          ("fpu amx_tile amx_bf16", True), ("fpu avx512_bf16x", False)):
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        matmul.native_bfloat16.cache_clear()
        assert matmul.native_bfloat16() is native, flags
    cpuinfo.unlink()
    matmul.native_bfloat16.cache_clear()
    assert matmul.native_bfloat16() is False  # no /proc/cpuinfo (macOS, Windows): float32
    matmul.native_bfloat16.cache_clear()


# ---------------------------------------------------------------- the product


def test_linear_bfloat16_is_close_to_float32():
    torch.manual_seed(0)
    x, weight, bias = torch.randn(7, 5, 64), torch.randn(48, 64) / 8, torch.randn(48)
    expected = nn.functional.linear(x.double(), weight.double(), bias.double())
    got = linear_bfloat16(x, weight.bfloat16(), bias)
    assert got.dtype == torch.float32 and got.shape == (7, 5, 48)
    # two inputs rounded to 8 bits and the product rounded again: within 2^-7 of the output's scale
    assert (got.double() - expected).abs().max() <= 2 ** -7 * expected.abs().max()
    assert torch.equal(linear_bfloat16(x, weight.bfloat16(), None) + bias, got)


@pytest.mark.parametrize("rows", [0, 1, 3, 4, 8, 9, 17, 24])
def test_rows_in_padded_blocks_give_each_row_its_own_product(rows, monkeypatch):
    """Blocks of fixed shapes (ROW_BLOCK, ROW_STEP) are an implementation detail: every row gets the
    product it gets alone, within bfloat16's rounding, and no padding row leaks into the output."""
    monkeypatch.setattr(matmul, "ROW_BLOCK", 8)
    monkeypatch.setattr(matmul, "ROW_STEP", 4)
    torch.manual_seed(rows)
    x, weight, bias = torch.randn(rows, 2, 16), torch.randn(12, 16) / 4, torch.randn(12)
    got = linear_bfloat16(x, weight.bfloat16(), bias)  # rows 2 12
    assert got.shape == (rows, 2, 12) and got.dtype == torch.float32
    alone = torch.stack([linear_bfloat16(row[None], weight.bfloat16(), bias)[0] for row in x]) if rows else got
    assert torch.allclose(got, alone, atol=1e-2, rtol=0)
    expected = nn.functional.linear(x.double(), weight.double(), bias.double())
    assert torch.allclose(got.double(), expected, atol=2 ** -7 * max([1.0, *expected.abs().flatten().tolist()]), rtol=0)


# ---------------------------------------------------------------- Mixer.infer and MambaStack.infer


@pytest.mark.parametrize("masked", [False, True])
def test_stack_infer_in_bfloat16_agrees_with_float32(masked, monkeypatch):
    stack = seeded_stack()
    torch.manual_seed(1)
    x = torch.randn(3, 17, CONFIG.hidden_size)  # b l h
    mask = torch.ones(3, 17)
    if masked:
        mask[1, 12:] = 0
        mask[2, 5:] = 0
    reference = infer(stack, x, monkeypatch, "float32", mask)
    fast = infer(stack, x, monkeypatch, "bfloat16", mask)
    assert not torch.equal(fast, reference)  # it did take the bfloat16 path
    # the output is RMS-normalised (about unit scale): bfloat16's rounding through two blocks stays
    # within a few hundredths, a hundred times float32's own disagreement of 1e-6 and far from the signal
    assert torch.allclose(fast, reference, atol=3e-2, rtol=0)
    assert (fast - reference).abs().mean() < 5e-3


def test_mixer_projections_in_bfloat16_are_the_listed_ones(monkeypatch):
    stack = seeded_stack()
    mixer = stack.layers[0].mixer
    x = torch.randn(9, 2, CONFIG.hidden_size)  # l b h
    infer(mixer, x, monkeypatch, "bfloat16")
    assert set(mixer._bf16_weights._copies) == set(Mixer.BFLOAT16_PROJECTIONS) == {"in_proj", "x_proj", "out_proj"}
    for name in Mixer.BFLOAT16_PROJECTIONS:
        assert torch.equal(mixer._bf16_weights.get(name, getattr(mixer, name).weight),
                           getattr(mixer, name).weight.bfloat16())


def test_the_state_dict_and_training_forward_are_unchanged_by_the_bfloat16_path(monkeypatch):
    stack = seeded_stack()
    before = copy.deepcopy(stack.state_dict())
    x = torch.randn(2, 6, CONFIG.hidden_size)
    forward_before = stack(x)
    infer(stack, x, monkeypatch, "bfloat16")
    after = stack.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[name], before[name]) and after[name].dtype == torch.float32 for name in before)
    assert not any(t.dtype == torch.bfloat16 for t in [*stack.parameters(), *stack.buffers()])
    buffer = io.BytesIO()
    torch.save(stack.state_dict(), buffer)
    buffer.seek(0)
    reloaded = MambaStack(CONFIG)
    reloaded.load_state_dict(torch.load(buffer))  # strict: no extra keys
    assert torch.equal(stack(x), forward_before)  # forward (training) never multiplies in bfloat16


def test_the_bfloat16_copies_follow_a_weight_that_changes(monkeypatch):
    stack = seeded_stack()
    x = torch.randn(2, 8, CONFIG.hidden_size)
    infer(stack, x, monkeypatch, "bfloat16")
    other = seeded_stack(seed=7)
    stack.load_state_dict(other.state_dict())  # in place: the version counters move
    assert torch.equal(infer(stack, x, monkeypatch, "bfloat16"), infer(other, x, monkeypatch, "bfloat16"))
    with torch.no_grad():
        for layer in stack.layers:
            layer.mixer.in_proj.weight.mul_(2)  # as an optimizer step writes
    fresh = copy.deepcopy(stack)
    fresh.layers[0].mixer._bf16_weights.clear()
    fresh.layers[1].mixer._bf16_weights.clear()
    assert torch.equal(infer(stack, x, monkeypatch, "bfloat16"), infer(fresh, x, monkeypatch, "bfloat16"))


def test_a_wrapped_projection_keeps_its_own_forward(monkeypatch):
    """A projection that is not a plain nn.Linear (a LoRA adapter around it) is called, not read."""
    stack = seeded_stack()
    mixer = stack.layers[0].mixer
    x = torch.randn(5, 2, CONFIG.hidden_size)  # l b h

    class Doubled(nn.Linear):
        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(inputs)

    plain = infer(mixer, x, monkeypatch, "bfloat16")
    doubled = Doubled(mixer.out_proj.in_features, mixer.out_proj.out_features)
    doubled.load_state_dict(mixer.out_proj.state_dict())
    mixer.out_proj = doubled
    mixer._bf16_weights.clear()
    assert torch.allclose(infer(mixer, x, monkeypatch, "bfloat16"), 2 * plain, atol=2e-2)
    assert set(mixer._bf16_weights._copies) == {"in_proj", "x_proj"}  # out_proj ran its own forward


def test_float32_path_makes_no_copies(monkeypatch):
    stack = seeded_stack()
    infer(stack, torch.randn(2, 4, CONFIG.hidden_size), monkeypatch, "float32")
    assert all(len(layer.mixer._bf16_weights) == 0 for layer in stack.layers)
