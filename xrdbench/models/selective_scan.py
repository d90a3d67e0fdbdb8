"""The Mamba (S6) selective scan, in pure PyTorch with an optional CUDA kernel.

For inputs ``u`` (B, L, D), step sizes ``delta`` (B, L, D), a diagonal state matrix ``A``
(D, N), input-dependent ``B`` and ``C`` (B, L, N) and a skip ``D`` (D,), the scan is::

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t      # (B, D, N), h_{-1} = 0
    y_t = sum_n C_t[n] * h_t[:, :, n] + D * u_t                  # (B, D)

(zero-order hold for A, Euler for B, as in Mamba). Three functions compute it:

* :func:`selective_scan_reference`: a plain loop over t; slow, for tests.
* :func:`selective_scan_chunked`: the sequence in chunks of ``chunk_size`` steps, the
  state (B, D, N) carried from chunk to chunk. Inside a chunk the linear recurrence
  h = a*h + b is solved either by a short loop or in parallel by a log-depth
  (Hillis-Steele) scan over the associative pairs (a, b); both only multiply decay
  factors <= 1, so neither overflows (unlike an exp(-cumsum(delta*A)) product form).
  Memory: at most one chunk's (B, T, D, N) is alive at a time. Each chunk is a custom
  autograd function whose hand-written backward recomputes the chunk from its inputs
  (a checkpoint) and runs the adjoint recurrence backwards in time, so autograd keeps
  only the inputs and the chunk-boundary states. The full (B, L, D, N) state is never
  materialised, in forward or backward.
* :func:`selective_scan`: the ``mamba_ssm`` CUDA kernel (``selective_scan_fn``) when the
  tensors are on CUDA and that package imports, otherwise :func:`selective_scan_chunked`.
"""

from __future__ import annotations

import torch

__all__ = ["selective_scan", "selective_scan_chunked", "selective_scan_reference", "mamba_ssm_available"]


def selective_scan_reference(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                             C: torch.Tensor, D: torch.Tensor | None = None) -> torch.Tensor:
    """The scan as a sequential loop over t. Returns y (B, L, D)."""
    batch, length, d = u.shape
    h = u.new_zeros(batch, d, A.shape[1])
    ys = []
    for t in range(length):
        dA = torch.exp(delta[:, t, :, None] * A)                               # (B, D, N)
        dBu = delta[:, t, :, None] * B[:, t, None, :] * u[:, t, :, None]       # (B, D, N)
        h = dA * h + dBu
        ys.append((h * C[:, t, None, :]).sum(-1))                              # (B, D)
    y = torch.stack(ys, dim=1)
    if D is not None:
        y = y + u * D
    return y


def _recurrence_parallel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Inclusive scan of h_t = a_t h_{t-1} + b_t along dim 1 with h_{-1} = 0 (Hillis-Steele).

    ceil(log2 T) vectorised steps; only ever multiplies decay factors together, so it is
    stable for any a in [0, 1].
    """
    length = a.shape[1]
    step = 1
    while step < length:
        b = torch.cat([b[:, :step], torch.addcmul(b[:, step:], a[:, step:], b[:, :-step])], dim=1)
        a = torch.cat([a[:, :step], a[:, step:] * a[:, :-step]], dim=1)
        step *= 2
    return b


def _recurrence_loop(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The same scan as a short loop over the chunk (fewer passes over memory; faster on CPU)."""
    out = torch.empty_like(b)
    h = b[:, 0]
    out[:, 0] = h
    for t in range(1, a.shape[1]):
        h = torch.addcmul(b[:, t], a[:, t], h)
        out[:, t] = h
    return out


_RECURRENCES = {"loop": _recurrence_loop, "parallel": _recurrence_parallel}


class _ScanChunk(torch.autograd.Function):
    """One chunk from state h0 (B, D, N) -> (y without the D skip (B, T, D), last state).

    Backward is written out by hand and recomputes the chunk's (B, T, D, N) internals from
    the inputs, so autograd keeps only the inputs and h0 for each chunk (a checkpoint).
    """

    @staticmethod
    def forward(ctx, h0, u, delta, A, B, C, inner):
        recurrence = _RECURRENCES[inner]
        dA = torch.exp(delta.unsqueeze(-1) * A)                                # (B, T, D, N)
        dBu = (delta * u).unsqueeze(-1) * B.unsqueeze(2)                       # (B, T, D, N)
        dBu[:, 0] = torch.addcmul(dBu[:, 0], dA[:, 0], h0)                     # fold in the carried state
        h = recurrence(dA, dBu)
        y = torch.einsum("btdn,btn->btd", h, C)
        ctx.save_for_backward(h0, u, delta, A, B, C)
        ctx.inner = inner
        return y, h[:, -1].clone()

    @staticmethod
    def backward(ctx, gy, gh_last):
        h0, u, delta, A, B, C = ctx.saved_tensors
        recurrence = _RECURRENCES[ctx.inner]
        du = delta * u
        dA = torch.exp(delta.unsqueeze(-1) * A)
        dBu = du.unsqueeze(-1) * B.unsqueeze(2)
        dBu[:, 0] = torch.addcmul(dBu[:, 0], dA[:, 0], h0)
        h = recurrence(dA, dBu)
        # dL/dh_t directly, then the adjoint g_t = gh_t + a_{t+1} g_{t+1}, scanned backwards in time
        gh = gy.unsqueeze(-1) * C.unsqueeze(2)
        if gh_last is not None:
            gh[:, -1] += gh_last
        a_next = torch.cat([dA[:, 1:], torch.ones_like(dA[:, :1])], dim=1)
        g = recurrence(a_next.flip(1), gh.flip(1)).flip(1)
        gC = torch.einsum("btdn,btd->btn", h, gy)
        gh0 = (g[:, 0] * dA[:, 0])
        h_prev = torch.cat([h0.unsqueeze(1), h[:, :-1]], dim=1)
        g_dAx = g * h_prev * dA                                                # dL/d(delta*A)
        gdu = torch.einsum("btdn,btn->btd", g, B)
        gB = torch.einsum("btdn,btd->btn", g, du)
        gdelta = torch.einsum("btdn,dn->btd", g_dAx, A) + gdu * u
        gA = torch.einsum("btdn,btd->dn", g_dAx, delta)
        gu = gdu * delta
        return gh0, gu, gdelta, gA, gB, gC, None


def selective_scan_chunked(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                           C: torch.Tensor, D: torch.Tensor | None = None, chunk_size: int = 64,
                           inner: str = "loop") -> torch.Tensor:
    """The scan chunk by chunk (see the module docstring). Returns y (B, L, D).

    ``inner`` solves the recurrence inside a chunk: ``"loop"`` (a short loop over its
    steps; the default, fastest on CPU) or ``"parallel"`` (log-depth Hillis-Steele scan).
    """
    if chunk_size < 1:
        raise ValueError(f"selective_scan_chunked: chunk_size must be >= 1, got {chunk_size}")
    if inner not in _RECURRENCES:
        raise ValueError(f"selective_scan_chunked: inner must be one of {sorted(_RECURRENCES)}, got {inner!r}")
    batch, length, d = u.shape
    h = u.new_zeros(batch, d, A.shape[1])
    ys = []
    # torch.split, not slicing: one SplitBackward concatenates the chunk gradients, where
    # per-chunk slices would each scatter into a zero (B, L, .) tensor (O(L^2 / T) work)
    for u_c, delta_c, B_c, C_c in zip(*(t.split(chunk_size, dim=1) for t in (u, delta, B, C))):
        y, h = _ScanChunk.apply(h, u_c, delta_c, A, B_c, C_c, inner)
        ys.append(y)
    y = torch.cat(ys, dim=1) if ys else u.new_zeros(batch, 0, d)
    if D is not None:
        y = y + u * D
    return y


def _mamba_ssm_scan_fn():
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or a broken CUDA extension
        return None
    return selective_scan_fn


def mamba_ssm_available() -> bool:
    """Whether CUDA is available and the ``mamba_ssm`` kernel imports."""
    return torch.cuda.is_available() and _mamba_ssm_scan_fn() is not None


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, chunk_size: int = 64) -> torch.Tensor:
    """The scan with the fastest available backend. Shapes as :func:`selective_scan_reference`."""
    if u.is_cuda and mamba_ssm_available():
        fn = _mamba_ssm_scan_fn()
        # mamba_ssm layout: u, delta (B, D, L); A (D, N); B, C (B, N, L); returns (B, D, L)
        y = fn(u.transpose(1, 2).contiguous(), delta.transpose(1, 2).contiguous(), A.contiguous(),
               B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous(),
               D=None if D is None else D.float().contiguous(), delta_softplus=False)
        return y.transpose(1, 2)
    return selective_scan_chunked(u, delta, A, B, C, D, chunk_size=chunk_size)
