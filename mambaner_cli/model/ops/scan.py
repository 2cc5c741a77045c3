"""The selective scan of Mamba: a sequential reference, a fast CPU path, and the dispatch between them.

Glossary of the dimensions (mamba_ssm's layout, used by every function here):

    b  batch size (sentences)
    l  sequence length (tokens)
    d  channels: the mixer's intermediate size (``expand * hidden_size``), each an independent SSM
    n  state size per channel (N in the paper)

The computation (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
Algorithm 2 and eq. 2a-2b; Ā by the zero-order hold of eq. 4, B̄ ≈ ΔB as in mamba_ssm's kernels) is,
per channel::

    Δ_t  = softplus(delta_t + delta_bias)          (when delta_softplus)
    Ā_t  = exp(Δ_t A)                               decay of each state, in (0, 1] because A < 0
    h_t  = Ā_t h_{t-1} + Δ_t B_t u_t                (2a)  h: [n] per channel, h_{-1} = 0
    y_t  = C_t · h_t + D u_t                        (2b)  plus the skip D
    y_t *= silu(z_t)                                 the gate of the Mamba block

Why a custom CPU path: transformers' torch fallback (``mamba_selective_scan``) first materialises
Ā and ΔBu for the whole sequence, [b, d, l, n] each, then loops position by position, and autograd
records every step (its backward even writes a full-size zero gradient per step). On a CPU all of this
is bound by memory traffic and per-op overhead, not arithmetic. ``selective_scan_chunked`` keeps the
recurrence sequential (work-efficient and exact) but:

- works chunk by chunk in cache-sized [m, b, n, d] buffers (one position = one contiguous [b, n, d]
  block; channels innermost so that broadcasting over n and contracting over n are vectorised along d
  and the contractions are batched matmuls);
- spends one fused ``addcmul_`` per position; everything else is a few large ops per chunk;
- uses ``exp2`` instead of ``exp`` (2-3x cheaper in PyTorch's CPU kernels);
- has a hand-written backward that recomputes each chunk from its saved initial state (as mamba_ssm's
  CUDA kernel does) and runs the adjoint recurrence backwards, instead of an autograd graph of l steps.

Decays are only ever multiplied, never divided, and every exponent is Δ·A <= 0, so a huge Δ·|A| just
underflows to a reset state; nothing can overflow.

Alternatives measured and rejected on the CPU: the same scan vectorised across chunks (two levels,
sqrt(l) steps each) needs extra full passes and was slower; the "cumulative sum of log-decays" form
h_t = exp(c_t) Σ_s exp(-c_s) x_s is slower too and overflows (exp of a positive cumulative sum) once
Δ·|A| reaches a few tens per chunk; its stable variant needs a [T, T] decay matrix per chunk, T times
the exps, and exp is the most expensive op here. A log-depth (Hillis-Steele) scan does log2(l) full
passes over [b, l, n, d].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mambaner_cli.model.ops.numba_infer import scan_time_major_numba, use_numba

try:  # the fused CUDA kernel, when the optional ``cuda`` extra is installed
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _mamba_ssm_scan
except (ImportError, OSError):  # OSError: a build that does not match the installed CUDA/torch
    _mamba_ssm_scan = None

LOG2_E = math.log2(math.e)
# Elements of one [chunk, b, n, d] buffer when chunk_size is automatic: 2**19 floats = 2 MiB, so the
# two to four buffers a chunk needs stay in cache while each position is updated (measured best among
# 2**16..2**20 for the tagger's mixers; bigger chunks leave the cache, smaller ones pay per-op overhead).
_CHUNK_ELEMENTS = 1 << 19


def selective_scan_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """Plain sequential selective scan, position by position in float32: the ground truth for tests.

    Shapes: u [b, d, l], delta [b, d, l], A [d, n], B [b, n, l], C [b, n, l], D [d], z [b, d, l],
    delta_bias [d]; returns y [b, d, l] in u's dtype. Follows Algorithm 2 of the Mamba paper literally:
    discretise at step t, update the state (eq. 2a), read it out (eq. 2b).
    """
    dtype_in = u.dtype
    u, delta, A, B, C = u.float(), delta.float(), A.float(), B.float(), C.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]  # b d l
    if delta_softplus:
        delta = F.softplus(delta)  # b d l
    batch, channels, length = u.shape
    state = u.new_zeros(batch, channels, A.shape[1])  # b d n
    outputs = []
    for t in range(length):
        decay = torch.exp(delta[:, :, t, None] * A)  # b d n    Ā_t = exp(Δ_t A)
        drive = delta[:, :, t, None] * B[:, None, :, t] * u[:, :, t, None]  # b d n    Δ_t B_t u_t
        state = decay * state + drive  # b d n    (2a)
        outputs.append(torch.einsum("bdn,bn->bd", state, C[:, :, t]))  # b d    (2b) C_t · h_t
    y = torch.stack(outputs, dim=2)  # b d l
    if D is not None:
        y = y + u * D.float()[:, None]  # b d l
    if z is not None:
        y = y * F.silu(z.float())  # b d l
    return y.to(dtype_in)


def _chunks(length: int, chunk_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk_size, length)) for start in range(0, length, chunk_size)]


def _time_major(x: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """Positions start:end of a [b, l, k] tensor as a [m, b, k] view (no copy)."""
    return x[:, start:end].transpose(0, 1)


def _discretize(
    dt: torch.Tensor,
    dtu: torch.Tensor,
    B: torch.Tensor,
    A2: torch.Tensor,
    decay: torch.Tensor,
    drive: torch.Tensor,
) -> None:
    """Fill a chunk's buffers: decay = exp(Δ A) and drive = Δ u B, both [m, b, n, d] (in place).

    dt, dtu: [m, b, d] (Δ and Δ u); B: [m, b, n]; A2: [n, d], A / ln 2 so that exp2(Δ A2) = exp(Δ A).
    """
    torch.mul(dt[:, :, None, :], A2, out=decay)  # m b n d    Δ A / ln 2, <= 0
    decay.exp2_()  # m b n d    exp(Δ A), in (0, 1]
    torch.mul(dtu[:, :, None, :], B[:, :, :, None], out=drive)  # m b n d    Δ u B


def _recur(decay: torch.Tensor, states: torch.Tensor, initial: torch.Tensor | None) -> None:
    """In place: states[t] = decay[t] * states[t-1] + states[t] (states holds the drive on entry)."""
    if initial is not None:
        states[0].addcmul_(decay[0], initial)  # b n d
    for t in range(1, states.shape[0]):
        states[t].addcmul_(decay[t], states[t - 1])  # b n d


class _ChunkedScan(torch.autograd.Function):
    """y = C · h with h_t = exp(Δ_t A) h_{t-1} + Δ_t u_t B_t, in the [b, l, channels] layout.

    Inputs: u [b, l, d], delta [b, l, d] (already positive: bias and softplus are applied outside,
    by autograd), A [d, n], B [b, l, n], C [b, l, n]. Output y [b, l, d]. D and the gate stay outside.
    Chunk buffers are [m, b, n, d]: one position is a contiguous [b, n, d] block, and the channels are
    innermost so that broadcasting Δ over n and contracting C over n are both vectorised along d.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, chunk_size: int):  # autograd's signature: tensors as documented above
        batch, length, channels = u.shape
        n = A.shape[1]
        dtu = delta * u  # b l d    Δ u
        A2 = (A * LOG2_E).t().contiguous()  # n d
        chunks = _chunks(length, chunk_size)
        decay = u.new_empty(chunk_size, batch, n, channels)  # m b n d
        states = u.new_empty(chunk_size, batch, n, channels)  # m b n d
        y = u.new_empty(length, batch, 1, channels)  # l b 1 d
        saving = any(ctx.needs_input_grad[:5])
        initial_states = u.new_zeros(len(chunks), batch, n, channels) if saving else None  # k b n d
        initial = None
        for k, (start, end) in enumerate(chunks):
            m = end - start
            _discretize(
                _time_major(delta, start, end),
                _time_major(dtu, start, end),
                _time_major(B, start, end),
                A2,
                decay[:m],
                states[:m],
            )
            _recur(decay[:m], states[:m], initial)
            C_chunk = _time_major(C, start, end)  # m b n
            torch.matmul(C_chunk[:, :, None, :], states[:m], out=y[start:end])  # m b 1 d    C_t · h_t
            if k + 1 < len(chunks):
                initial = states[m - 1].clone()  # b n d    (the buffer is overwritten by the next chunk)
                if saving:
                    initial_states[k + 1].copy_(initial)
        if saving:
            ctx.save_for_backward(u, delta, A, B, C, initial_states)
            ctx.chunk_size = chunk_size
        return y.squeeze(2).transpose(0, 1).contiguous()  # b l d

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        u, delta, A, B, C, initial_states = ctx.saved_tensors
        chunk_size = ctx.chunk_size
        batch, length, channels = u.shape
        n = A.shape[1]
        dtu = delta * u  # b l d
        gy = grad_y.to(u.dtype)  # b l d
        A_nd = A.t().contiguous()  # n d
        A2 = A_nd * LOG2_E  # n d

        grad_dt = u.new_empty(length, batch, channels)  # l b d
        grad_u = u.new_empty(length, batch, channels)  # l b d
        grad_B = u.new_empty(length, batch, 1, n)  # l b 1 n
        grad_C = u.new_empty(length, batch, 1, n)  # l b 1 n
        grad_A = A_nd.new_zeros(n, channels)  # n d
        decay = u.new_empty(chunk_size, batch, n, channels)  # m b n d
        states = u.new_empty(chunk_size, batch, n, channels)  # m b n d
        grad_h = u.new_empty(chunk_size, batch, n, channels)  # m b n d
        scratch = u.new_empty(chunk_size, batch, n, channels)  # m b n d
        carry = None  # b n d    exp(Δ_e A) * dL/dh_e from the chunk after this one
        for k, (start, end) in reversed(list(enumerate(_chunks(length, chunk_size)))):
            m = end - start
            a, h, g, tmp = decay[:m], states[:m], grad_h[:m], scratch[:m]
            dt_c, dtu_c, u_c = (_time_major(x, start, end) for x in (delta, dtu, u))  # m b d
            B_c, C_c, gy_c = (
                _time_major(B, start, end),
                _time_major(C, start, end),
                _time_major(gy, start, end),
            )
            # Recompute the chunk's decays and states from its saved initial state.
            _discretize(dt_c, dtu_c, B_c, A2, a, h)
            _recur(a, h, initial_states[k] if k else None)
            # dL/dC_t = Σ_d gy_t h_t, as [1, d] @ [d, n]: with the contracted dim innermost in both
            # operands MKL is ~9x faster than [n, d] @ [d, 1].
            torch.matmul(gy_c[:, :, None, :], h.transpose(2, 3), out=grad_C[start:end])  # m b 1 n
            # dL/dh_t = C_t gy_t + exp(Δ_{t+1} A) dL/dh_{t+1}: the same recurrence, run backwards.
            torch.mul(gy_c[:, :, None, :], C_c[:, :, :, None], out=g)  # m b n d
            if carry is not None:
                g[m - 1].add_(carry)
            for t in range(m - 2, -1, -1):
                g[t].addcmul_(a[t + 1], g[t + 1])  # b n d
            carry = a[0] * g[0]  # b n d
            # The drive Δ u B: dL/du = Δ Σ_n B g, dL/dΔ gets u Σ_n B g, dL/dB = Σ_d g Δ u.
            drive_grad = torch.matmul(B_c[:, :, None, :], g).squeeze(2)  # m b d
            torch.mul(drive_grad, dt_c, out=grad_u[start:end])  # m b d
            torch.mul(drive_grad, u_c, out=grad_dt[start:end])  # m b d
            torch.matmul(dtu_c[:, :, None, :], g.transpose(2, 3), out=grad_B[start:end])  # m b 1 n
            # The decay exp(Δ A): with q = g * exp(Δ A) * h_{t-1}, dL/dΔ gets Σ_n q A, dL/dA = Σ q Δ.
            g.mul_(a)  # m b n d
            g[1:].mul_(h[:-1])  # m-1 b n d
            if k:
                g[0].mul_(initial_states[k])  # b n d
            else:
                g[0].zero_()  # h_{-1} = 0
            torch.mul(g, A_nd, out=tmp)  # m b n d
            grad_dt[start:end].add_(tmp.sum(2))  # m b d
            torch.mul(g, dt_c[:, :, None, :], out=tmp)  # m b n d
            grad_A.add_(tmp.sum((0, 1)))  # n d
        return (
            grad_u.transpose(0, 1),  # b l d
            grad_dt.transpose(0, 1),  # b l d
            grad_A.t(),  # d n
            grad_B.squeeze(2).transpose(0, 1),  # b l n
            grad_C.squeeze(2).transpose(0, 1),  # b l n
            None,
        )


def _auto_chunk_size(batch: int, channels: int, n: int, length: int) -> int:
    return max(1, min(length, _CHUNK_ELEMENTS // max(1, batch * channels * n)))


def scan_channels_last(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int = 0,
) -> torch.Tensor:
    """The chunked core in the mixer's own layout: u, delta [b, l, d], B, C [b, l, n] → C·h [b, l, d].

    ``delta`` must already be positive (bias added, softplus applied); no D skip, no gate. This is
    what ``Mixer.forward`` (modules/block.py) calls on the CPU: its activations are [b, l, ·] anyway, and converting to
    and from mamba_ssm's [b, d, l] costs more than a chunk of the scan. Computes in float32 (float64
    stays float64) and returns that dtype.
    """
    work = torch.float64 if u.dtype == torch.float64 else torch.float32
    batch, length, channels = u.shape
    if chunk_size <= 0:
        chunk_size = _auto_chunk_size(batch, channels, A.shape[1], length)
    chunk_size = max(1, min(chunk_size, length))
    return _ChunkedScan.apply(*(t.to(work).contiguous() for t in (u, delta, A, B, C)), chunk_size)  # b l d


def scan_time_major(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int = 0,
) -> torch.Tensor:
    """The chunked scan for inference, time-major: u, delta [l, b, d], B, C [l, b, n] → C·h [l, b, d].

    What ``Mixer.infer`` calls (tagging, no gradient). Same operations, in the same
    order, as ``_ChunkedScan.forward`` (so the same numbers), minus what only a backward pass needs:
    in the [l, b, ·] layout a chunk of positions is a contiguous slice, so nothing is transposed or
    copied to [b, l, ·] and back; two state buffers take turns, so a chunk's initial state is read
    where the previous chunk left it instead of being cloned; nothing is saved. ``delta`` must already
    be positive; no D skip, no gate. Not differentiable: call it without autograd. Computes in
    float32 (float64 stays float64) and returns that dtype.
    """
    work = torch.float64 if u.dtype == torch.float64 else torch.float32
    u, delta, A, B, C = (t.to(work) for t in (u, delta, A, B, C))
    length, batch, channels = u.shape
    n = A.shape[1]
    if chunk_size <= 0:
        chunk_size = _auto_chunk_size(batch, channels, n, length)
    chunk_size = max(1, min(chunk_size, length))
    dtu = delta * u  # l b d    Δ u
    A2 = (A * LOG2_E).t().contiguous()  # n d
    decay = u.new_empty(chunk_size, batch, n, channels)  # m b n d
    buffers = (u.new_empty(chunk_size, batch, n, channels), u.new_empty(chunk_size, batch, n, channels))
    y = u.new_empty(length, batch, 1, channels)  # l b 1 d
    initial = None  # b n d    the last state of the previous chunk, in the other buffer
    for k, (start, end) in enumerate(_chunks(length, chunk_size)):
        m = end - start
        states = buffers[k % 2][:m]  # m b n d
        _discretize(delta[start:end], dtu[start:end], B[start:end], A2, decay[:m], states)
        _recur(decay[:m], states, initial)
        torch.matmul(C[start:end, :, None, :], states, out=y[start:end])  # m b 1 d    C_t · h_t
        initial = states[m - 1]
    return y.squeeze(2)  # l b d


def infer_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
               D: torch.Tensor | None = None, z: torch.Tensor | None = None) -> torch.Tensor:
    """The inference scan ``Mixer.infer`` runs: ``scan_time_major``'s arguments and result ([l, b, ·],
    float32), or with D [d] and the gate z [l, b, d] the gated output (C·h + D u) · silu(z) of the Mamba
    block. By ``scan_time_major`` and the same skip and gate as ``Mixer._scan_output`` (the reference,
    and the default), or by the numba kernel (ops/numba_infer.py, all in one pass) where
    ``numba_infer.use_numba`` says so ($MAMBANER_KERNELS=numba, a CPU, not float64)."""
    if use_numba(u):
        return scan_time_major_numba(u, delta, A, B, C, D, z)  # l b d
    y = scan_time_major(u, delta, A, B, C)  # l b d
    if D is not None:
        y = y + u.float() * D.float()  # l b d    skip
    if z is not None:
        y = y * F.silu(z.float())  # l b d    gate
    return y


def selective_scan_chunked(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    chunk_size: int = 0,
) -> torch.Tensor:
    """Fast pure-PyTorch selective scan (CPU or any device), same arguments and result as the reference.

    ``chunk_size`` is the number of positions discretised and read out together; 0 picks it from the
    batch size so that a chunk's [chunk, b, n, d] buffer holds about 2 MiB. Differentiable with respect
    to every tensor argument (the backward recomputes each chunk; no double backward).
    """
    dtype_in = u.dtype
    # float32 like the reference and mamba_ssm; float64 stays float64 (gradcheck in the tests)
    work = torch.float64 if dtype_in == torch.float64 else torch.float32
    u, delta = u.to(work), delta.to(work)
    if delta_bias is not None:
        delta = delta + delta_bias.to(work)[:, None]  # b d l
    if delta_softplus:
        delta = F.softplus(delta)  # b d l
    y = scan_channels_last(
        u.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2), chunk_size
    ).transpose(1, 2)  # b d l
    if D is not None:
        y = y + u * D.to(work)[:, None]  # b d l
    if z is not None:
        y = y * F.silu(z.to(work))  # b d l
    return y.to(dtype_in)


def mamba_ssm_available() -> bool:
    """Whether mamba_ssm's fused CUDA kernel could be imported."""
    return _mamba_ssm_scan is not None


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """mamba_ssm's fused kernel for CUDA tensors when it is installed, else ``selective_scan_chunked``."""
    if _mamba_ssm_scan is not None and u.is_cuda:
        return _mamba_ssm_scan(
            u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus
        )
    return selective_scan_chunked(
        u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus
    )
