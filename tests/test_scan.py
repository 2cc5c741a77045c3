"""Tests for mambaner_cli.model.ops.scan (the selective scan) and mambaner_cli.model.ops.conv (causal
depthwise convolution). Their speed is measured by benchmarks/bench_scan.py and benchmarks/bench_guards.py."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from mambaner_cli.model.ops import numba_infer
from mambaner_cli.model.ops.conv import causal_depthwise_conv_time_major, infer_conv_silu
from mambaner_cli.model.ops.numba_infer import KERNELS_ENV
from mambaner_cli.model.ops.scan import (
    infer_scan,
    scan_channels_last,
    scan_time_major,
    selective_scan,
    selective_scan_chunked,
    selective_scan_ref,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one torch thread on a shared CPU


def scan_inputs(
    b: int, d: int, l: int, n: int, *, dtype=torch.float32, max_delta=None, max_decay_rate=2.0, seed=0
) -> dict:
    """Random selective-scan arguments; max_delta switches to raw (no softplus) Δ in [0, max_delta]."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    if max_delta is None:
        delta, softplus, bias = randn(b, d, l) * 0.5, True, randn(d) * 0.5
    else:
        delta, softplus, bias = torch.rand(b, d, l, generator=g, dtype=dtype) * max_delta, False, None
    A = -(torch.rand(d, n, generator=g, dtype=dtype) * (max_decay_rate - 0.05) + 0.05)
    return {
        "u": randn(b, d, l),
        "delta": delta,
        "A": A,
        "B": randn(b, n, l),
        "C": randn(b, n, l),
        "D": randn(d),
        "z": randn(b, d, l),
        "delta_bias": bias,
        "delta_softplus": softplus,
    }


# ---------------------------------------------------------------------------------------------- scan


@pytest.mark.parametrize(
    "b,d,l,n,chunk",
    [(2, 8, 37, 4, 5), (3, 16, 64, 8, 0), (1, 4, 1, 3, 4), (2, 6, 33, 5, 1), (2, 8, 50, 4, 64)],
)
def test_chunked_scan_matches_reference(b, d, l, n, chunk):
    args = scan_inputs(b, d, l, n)
    expected = selective_scan_ref(**args)
    got = selective_scan_chunked(**args, chunk_size=chunk)
    assert got.shape == (b, d, l)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_chunked_scan_optional_arguments():
    args = scan_inputs(2, 8, 19, 4)
    for drop in itertools.product([False, True], repeat=3):
        partial = dict(args)
        for key, off in zip(("D", "z", "delta_bias"), drop):
            if off:
                partial[key] = None
        torch.testing.assert_close(
            selective_scan_chunked(**partial, chunk_size=4),
            selective_scan_ref(**partial),
            rtol=1e-5,
            atol=1e-5,
        )


def test_chunked_scan_is_stable_for_large_decays():
    # Δ up to 5 and A down to -16: single-step decays down to exp(-80), cumulative far below float range.
    args = scan_inputs(2, 8, 512, 4, max_delta=5.0, max_decay_rate=16.0, seed=1)
    expected = selective_scan_ref(**args)
    got = selective_scan_chunked(**args, chunk_size=16)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # Far beyond float range per step (exp(-800)): the state simply resets, nothing overflows.
    args["delta"] = args["delta"] * 10
    got = selective_scan_chunked(**args, chunk_size=16)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, selective_scan_ref(**args), rtol=1e-5, atol=1e-5)
    assert_gradients_match(args, chunk_size=16)


def assert_gradients_match(args: dict, chunk_size: int) -> None:
    """Gradients of a random projection of the output, chunked vs reference, for every tensor argument."""
    names = [k for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias") if args[k] is not None]
    weights = torch.randn(args["u"].shape, generator=torch.Generator().manual_seed(3))

    def grads(fn, **extra):
        leaves = {k: args[k].clone().requires_grad_() for k in names}
        out = fn(**{**args, **leaves}, **extra)
        return torch.autograd.grad((out * weights).sum(), [leaves[k] for k in names])

    for name, got, expected in zip(
        names, grads(selective_scan_chunked, chunk_size=chunk_size), grads(selective_scan_ref)
    ):
        assert torch.isfinite(got).all(), name
        assert (got - expected).abs().max() <= 1e-5 * max(1.0, expected.abs().max()), name


def test_chunked_scan_gradients_match_reference():
    assert_gradients_match(scan_inputs(2, 8, 29, 4, seed=2), chunk_size=6)


def test_chunked_scan_gradcheck_float64():
    args = scan_inputs(2, 3, 9, 2, dtype=torch.float64, seed=4)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    leaves = [args[k].clone().requires_grad_() for k in names]
    assert torch.autograd.gradcheck(
        lambda *xs: selective_scan_chunked(**dict(zip(names, xs)), delta_softplus=True, chunk_size=4), leaves
    )


def test_channels_last_core_equals_public_layout():
    args = scan_inputs(2, 8, 21, 4, seed=5)
    delta = F.softplus(args["delta"] + args["delta_bias"][:, None])
    expected = selective_scan_chunked(args["u"], delta, args["A"], args["B"], args["C"], chunk_size=5)
    got = scan_channels_last(
        args["u"].transpose(1, 2),
        delta.transpose(1, 2),
        args["A"],
        args["B"].transpose(1, 2),
        args["C"].transpose(1, 2),
        chunk_size=7,
    )
    torch.testing.assert_close(got.transpose(1, 2), expected, rtol=1e-5, atol=1e-5)


def test_dispatch_on_cpu_is_the_chunked_path():
    args = scan_inputs(2, 8, 17, 4, seed=6)
    torch.testing.assert_close(selective_scan(**args), selective_scan_chunked(**args), rtol=0, atol=0)


@pytest.mark.parametrize("b,d,l,n,chunk", [(2, 8, 37, 4, 5), (3, 16, 20, 8, 0), (1, 4, 1, 3, 4), (2, 6, 9, 5, 1),
                                         (2, 8, 12, 4, 64)])
def test_time_major_scan_equals_the_chunked_core(b, d, l, n, chunk):
    """The inference scan runs the chunked core's operations in the same order: equal bit for bit, and
    within float tolerance of the sequential reference. B and C come as strided views, as from x_proj."""
    args = scan_inputs(b, d, l, n, seed=9)
    delta = F.softplus(args["delta"] + args["delta_bias"][:, None])  # b d l
    u, B, C = args["u"], args["B"], args["C"]
    expected = scan_channels_last(u.transpose(1, 2), delta.transpose(1, 2), args["A"], B.transpose(1, 2),
                                  C.transpose(1, 2), chunk_size=chunk)  # b l d
    projected = torch.cat([torch.randn(l, b, 3), B.permute(2, 0, 1), C.permute(2, 0, 1)], dim=-1)  # l b 3+2n
    _, B_view, C_view = torch.split(projected, [3, n, n], dim=-1)  # l b n, l b n    (not contiguous)
    with torch.inference_mode():
        got = scan_time_major(u.permute(2, 0, 1).contiguous(), delta.permute(2, 0, 1).contiguous(), args["A"],
                              B_view, C_view, chunk_size=chunk)  # l b d
    assert got.shape == (l, b, d)
    torch.testing.assert_close(got.transpose(0, 1), expected, rtol=0, atol=0)
    reference = selective_scan_ref(u, delta, args["A"], B, C)  # b d l
    torch.testing.assert_close(got.permute(1, 2, 0), reference, rtol=1e-5, atol=1e-5)


def test_time_major_scan_keeps_float64():
    args = scan_inputs(2, 4, 7, 3, dtype=torch.float64, max_delta=1.5, seed=10)
    u, delta, B, C = (args[k].permute(2, 0, 1).contiguous() for k in ("u", "delta", "B", "C"))
    got = scan_time_major(u, delta, args["A"], B, C, chunk_size=3)
    assert got.dtype == torch.float64
    expected = scan_channels_last(*(args[k].transpose(1, 2) for k in ("u", "delta")), args["A"],
                                  *(args[k].transpose(1, 2) for k in ("B", "C")), chunk_size=3)  # float64 too
    torch.testing.assert_close(got.transpose(0, 1), expected, rtol=0, atol=0)


# --------------------------------------------------------------------------- numba's inference scan

needs_numba = pytest.mark.skipif(not numba_infer.numba_available(), reason="numba is not installed")


def time_major_inputs(b: int, d: int, l: int, n: int, seed: int, max_decay_rate: float = 2.0
                      ) -> tuple[torch.Tensor, ...]:
    """u, Δ (positive), A, B, C, D, z in the inference layout ([l, b, ·]); B and C as strided views of one
    projection, as ``Mixer`` splits them from x_proj's output."""
    args = scan_inputs(b, d, l, n, seed=seed, max_decay_rate=max_decay_rate)
    delta = F.softplus(args["delta"] + args["delta_bias"][:, None]).permute(2, 0, 1).contiguous()  # l b d
    u, z = (args[k].permute(2, 0, 1).contiguous() for k in ("u", "z"))  # l b d
    projected = torch.cat([args["B"].permute(2, 0, 1), args["C"].permute(2, 0, 1)], dim=-1)  # l b 2n
    B, C = torch.split(projected, [n, n], dim=-1)  # l b n, l b n    (not contiguous)
    return u, delta, args["A"], B, C, args["D"], z * 3  # z * 3: both tails of silu


@needs_numba
@pytest.mark.parametrize("b,d,l,n,rate", [(2, 8, 37, 4, 2.0), (3, 16, 20, 8, 2.0), (1, 4, 1, 3, 2.0),
                                          (2, 6, 9, 5, 300.0), (4, 32, 13, 16, 16.0)])
def test_numba_scan_matches_the_reference(b, d, l, n, rate):
    """Within float32 rounding of the sequential reference, and of the PyTorch inference scan; a decay
    rate of 300 drives Δ·A far below exp2's clamp at -126 (the state resets, as in the reference)."""
    u, delta, A, B, C, D, z = time_major_inputs(b, d, l, n, seed=b * 100 + l, max_decay_rate=rate)
    with torch.inference_mode():
        got = numba_infer.scan_time_major_numba(u, delta, A, B, C)  # l b d
        reference = selective_scan_ref(*(x.permute(1, 2, 0) for x in (u, delta)), A,
                                       *(x.permute(1, 2, 0) for x in (B, C)))  # b d l
        torch.testing.assert_close(got.permute(1, 2, 0), reference, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got, scan_time_major(u, delta, A, B, C), rtol=1e-5, atol=1e-5)
        gated = numba_infer.scan_time_major_numba(u, delta, A, B, C, D, z)  # l b d
        reference = selective_scan_ref(*(x.permute(1, 2, 0) for x in (u, delta)), A,
                                       *(x.permute(1, 2, 0) for x in (B, C)), D=D, z=z.permute(1, 2, 0))  # b d l
        torch.testing.assert_close(gated.permute(1, 2, 0), reference, rtol=1e-5, atol=1e-5)


@needs_numba
def test_numba_scan_takes_any_float_dtype_and_empty_batches():
    u, delta, A, B, C, D, z = time_major_inputs(2, 8, 5, 4, seed=11)
    with torch.inference_mode():
        expected = numba_infer.scan_time_major_numba(u, delta, A, B, C, D, z)
        half = numba_infer.scan_time_major_numba(*(x.bfloat16() for x in (u, delta)), A, B, C, D, z.bfloat16())
        assert half.dtype == torch.float32
        torch.testing.assert_close(half, expected, rtol=0.05, atol=0.05)
        assert numba_infer.scan_time_major_numba(u[:, :0], delta[:, :0], A, B[:, :0], C[:, :0]).shape == (5, 0, 8)
    with pytest.raises(ValueError, match="both D and z"):
        numba_infer.scan_time_major_numba(u, delta, A, B, C, D=D)


def test_infer_scan_dispatch(monkeypatch):
    """PyTorch's path by default and with MAMBANER_KERNELS=torch (the same numbers as ``scan_time_major``
    and ``Mixer._scan_output``), in float64 too; numba's kernel with MAMBANER_KERNELS=numba, and a
    RuntimeError with the fix when numba is asked for but missing, or the variable has another value."""
    u, delta, A, B, C, D, z = time_major_inputs(2, 8, 9, 4, seed=12)
    reference = (scan_time_major(u, delta, A, B, C) + u * D) * F.silu(z)  # l b d
    with torch.inference_mode():
        monkeypatch.delenv(KERNELS_ENV, raising=False)
        assert torch.equal(infer_scan(u, delta, A, B, C, D, z), reference)
        assert torch.equal(infer_scan(u, delta, A, B, C), scan_time_major(u, delta, A, B, C))
        monkeypatch.setenv(KERNELS_ENV, "torch")
        assert torch.equal(infer_scan(u, delta, A, B, C, D, z), reference)
        monkeypatch.setenv(KERNELS_ENV, "numba")
        if numba_infer.numba_available():
            assert torch.equal(infer_scan(u, delta, A, B, C, D, z),
                               numba_infer.scan_time_major_numba(u, delta, A, B, C, D, z))
        doubles = [x.double() for x in (u, delta, A, B, C, D, z)]
        assert infer_scan(*doubles).dtype == torch.float64  # float64 keeps the reference
        monkeypatch.setattr(numba_infer, "_kernels", lambda: None)  # as without numba
        with pytest.raises(RuntimeError, match="pip install numba"):
            infer_scan(u, delta, A, B, C, D, z)
        monkeypatch.setenv(KERNELS_ENV, "fast")
        with pytest.raises(RuntimeError, match="auto .the default., torch or numba"):
            infer_scan(u, delta, A, B, C, D, z)


def test_numba_kernels_say_how_to_install_numba(monkeypatch):
    monkeypatch.setattr(numba_infer, "_kernels", lambda: None)
    assert not numba_infer.numba_available()
    u, delta, A, B, C, _, _ = time_major_inputs(1, 4, 3, 2, seed=13)
    with pytest.raises(RuntimeError, match="pip install numba"):
        numba_infer.scan_time_major_numba(u, delta, A, B, C)
    with pytest.raises(RuntimeError, match="pip install numba"):
        numba_infer.conv_silu_time_major_numba(u, torch.ones(4, 1, 3), None)


@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize("length,kernel,bias,masked", [(9, 4, True, True), (2, 4, True, False), (3, 4, False, True),
                                                       (5, 1, True, False), (1, 2, False, True)])
def test_infer_conv_silu_matches_the_reference(monkeypatch, backend, length, kernel, bias, masked):
    """silu(conv) with padding zeroed, on a channel half of a projection read in place (as Mixer.infer
    passes it) and on a copy: PyTorch's bit for bit, numba's within float32 rounding."""
    if backend == "torch":
        monkeypatch.delenv(KERNELS_ENV, raising=False)  # the default
    elif not numba_infer.numba_available():
        pytest.skip("numba is not installed")
    else:
        monkeypatch.setenv(KERNELS_ENV, "numba")
    g = torch.Generator().manual_seed(length * 10 + kernel)
    projected = torch.randn(length, 3, 2 * 6, generator=g) * 3  # l b 2d
    weight, b = torch.randn(6, 1, kernel, generator=g), torch.randn(6, generator=g) if bias else None
    mask = None
    if masked:
        mask = torch.ones(length, 3)
        mask[length // 2:, 1] = 0
    for half in projected.chunk(2, dim=-1):  # l b d, l b d    (strided views)
        expected = F.silu(causal_depthwise_conv_time_major(half, weight, b))  # l b d
        if mask is not None:
            expected = expected * mask[..., None]
        with torch.inference_mode():
            for x in (half, half.contiguous()):
                got = infer_conv_silu(x, weight, b, mask)
                if backend == "torch":
                    assert torch.equal(got, expected)
                else:
                    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("length,kernel,bias", [(9, 4, True), (2, 4, True), (3, 4, False), (5, 1, True),
                                                (6, 3, True), (1, 2, False)])
def test_time_major_conv_equals_the_batch_major_conv(length, kernel, bias):
    from mambaner_cli.model.ops.conv import causal_depthwise_conv

    g = torch.Generator().manual_seed(length * 10 + kernel)
    x = torch.randn(3, length, 2 * 5, generator=g)[:, :, :5]  # b l d    a strided view, like chunk()
    weight, b = torch.randn(5, 1, kernel, generator=g), torch.randn(5, generator=g) if bias else None
    expected = causal_depthwise_conv(x, weight, b)  # b l d
    got = causal_depthwise_conv_time_major(x.transpose(0, 1), weight, b)  # l b d
    torch.testing.assert_close(got.transpose(0, 1), expected, rtol=0, atol=0)
    padded = F.conv1d(x.transpose(1, 2), weight, b, padding=kernel - 1, groups=5)[..., :length]  # b d l
    torch.testing.assert_close(got.permute(1, 2, 0), padded, rtol=1e-6, atol=1e-6)
