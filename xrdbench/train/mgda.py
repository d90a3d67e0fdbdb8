"""MGDA-UB multi-task weighting (Sener & Koltun 2018, "Multi-Task Learning as Multi-Objective Optimization").

The per-task gradients are taken with respect to the shared representation ``E`` only (the "upper
bound" variant), so one encoder forward suffices. The min-norm convex combination of those gradients
gives task weights ``α``; the encoder is updated with ``Σ α_t ∂L_t/∂E`` pushed back through it, while
each task head is updated with the gradient of its own (unweighted) loss.

:func:`min_norm_weights` solves ``min_α ‖Σ_t α_t g_t‖²`` over the simplex: in closed form for two
tasks, otherwise by Frank–Wolfe with away steps and exact line search on the Gram matrix, started at
the best pair and capped at ``max_iter`` iterations so it always terminates.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

NORMALIZATIONS = ("loss+", "loss", "l2", "none")
_EPS = 1e-12


def _pair_weight(m11: float, m12: float, m22: float) -> float:
    """Weight γ on the first vector minimising ‖γ g1 + (1−γ) g2‖², from the Gram entries."""
    denom = m11 - 2.0 * m12 + m22  # ‖g1 − g2‖²
    if denom <= _EPS * max(m11, m22, 1.0) or not np.isfinite(denom):
        return 0.5
    return float(np.clip((m22 - m12) / denom, 0.0, 1.0))


def _objective(alpha: np.ndarray, gram: np.ndarray) -> float:
    return float(alpha @ gram @ alpha)


def min_norm_weights_gram(gram: np.ndarray, max_iter: int = 250, tol: float = 1e-6) -> np.ndarray:
    """Simplex weights minimising ``αᵀ M α`` for a (T, T) positive semi-definite Gram matrix ``M``."""
    gram = np.asarray(gram, dtype=np.float64)
    n = gram.shape[0]
    if gram.ndim != 2 or gram.shape[1] != n or n == 0:
        raise ValueError(f"mgda: Gram matrix must be square and non-empty, got shape {gram.shape}")
    if not np.all(np.isfinite(gram)):
        raise ValueError("mgda: non-finite gradients")
    if n == 1:
        return np.ones(1)
    if n == 2:
        g = _pair_weight(gram[0, 0], gram[0, 1], gram[1, 1])
        return np.array([g, 1.0 - g])

    # Start at the best pair (closed form on every edge of the simplex).
    best, best_val = None, np.inf
    for i in range(n):
        for j in range(i + 1, n):
            g = _pair_weight(gram[i, i], gram[i, j], gram[j, j])
            alpha = np.zeros(n)
            alpha[i], alpha[j] = g, 1.0 - g
            val = _objective(alpha, gram)
            if val < best_val:
                best, best_val = alpha, val
    alpha = best
    scale = max(float(np.max(np.abs(np.diag(gram)))), _EPS)

    for _ in range(max_iter):
        grad = gram @ alpha  # half the gradient of αᵀMα
        cur = float(alpha @ grad)
        s = int(np.argmin(grad))  # Frank–Wolfe vertex
        support = np.flatnonzero(alpha > 0)
        v = int(support[np.argmax(grad[support])])  # away vertex
        fw_gap = cur - grad[s]
        away_gap = grad[v] - cur
        if max(fw_gap, away_gap) <= tol * scale:
            break
        if fw_gap >= away_gap:
            direction = -alpha.copy()
            direction[s] += 1.0
            step_max = 1.0
        else:
            direction = alpha.copy()
            direction[v] -= 1.0
            step_max = alpha[v] / (1.0 - alpha[v]) if alpha[v] < 1.0 else np.inf
        curv = float(direction @ gram @ direction)
        slope = float(direction @ grad)
        if curv <= _EPS * scale:
            step = step_max if slope < 0 else 0.0
        else:
            step = min(max(-slope / curv, 0.0), step_max)
        if not np.isfinite(step) or step <= 0.0:
            break
        alpha = alpha + step * direction
        alpha = np.clip(alpha, 0.0, None)
        alpha /= alpha.sum()
    return alpha


def min_norm_weights(gradients: torch.Tensor, max_iter: int = 250, tol: float = 1e-6) -> torch.Tensor:
    """(T,) simplex weights minimising ``‖Σ_t α_t g_t‖²`` for ``gradients`` of shape (T, D)."""
    if gradients.ndim != 2:
        raise ValueError(f"mgda: gradients must be (T, D), got shape {tuple(gradients.shape)}")
    g = gradients.detach().to(torch.float64)
    gram = (g @ g.T).cpu().numpy()
    alpha = min_norm_weights_gram(gram, max_iter=max_iter, tol=tol)
    return torch.as_tensor(alpha, dtype=gradients.dtype, device=gradients.device)


def _normalise(grad: torch.Tensor, loss: torch.Tensor, normalization: str) -> torch.Tensor:
    if normalization == "none":
        return grad
    norm = grad.norm()
    lval = loss.detach().abs()
    if normalization == "l2":
        return grad / norm.clamp_min(_EPS)
    if normalization == "loss":
        return grad / lval.clamp_min(_EPS)
    if normalization == "loss+":
        return grad / (lval * norm).clamp_min(_EPS)
    raise ValueError(f"mgda: unknown normalization {normalization!r}; expected one of {NORMALIZATIONS}")


def _task_gradients(shared: torch.Tensor, task_losses: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if not shared.requires_grad:
        raise ValueError("mgda: the shared representation must require grad")
    if not task_losses:
        raise ValueError("mgda: no task losses")
    grads = {}
    for task, loss in task_losses.items():
        (g,) = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
        grads[task] = torch.zeros_like(shared) if g is None else g
    return grads


def _weights_from_grads(grads: Mapping[str, torch.Tensor], task_losses: Mapping[str, torch.Tensor],
                        normalization: str, max_iter: int, tol: float) -> dict[str, float]:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"mgda: unknown normalization {normalization!r}; expected one of {NORMALIZATIONS}")
    tasks = list(task_losses)
    stacked = torch.stack([_normalise(grads[t].detach(), task_losses[t], normalization).reshape(-1) for t in tasks])
    alpha = min_norm_weights(stacked, max_iter=max_iter, tol=tol)
    return {t: float(a) for t, a in zip(tasks, alpha.tolist())}


def mgda_ub_weights(shared: torch.Tensor, task_losses: Mapping[str, torch.Tensor], normalization: str = "loss+",
                    max_iter: int = 250, tol: float = 1e-6) -> dict[str, float]:
    """Task → α: min-norm weights of the (normalised) task gradients w.r.t. ``shared`` (B, E).

    ``normalization``: ``"loss+"`` divides each gradient by loss × ‖g‖, ``"loss"`` by the loss,
    ``"l2"`` by ‖g‖, ``"none"`` leaves it. The graph is retained, so the losses can still be
    back-propagated afterwards.
    """
    grads = _task_gradients(shared, task_losses)
    return _weights_from_grads(grads, task_losses, normalization, max_iter, tol)


def mgda_backward(shared: torch.Tensor, task_losses: Mapping[str, torch.Tensor], normalization: str = "loss+",
                  max_iter: int = 250, tol: float = 1e-6) -> dict[str, float]:
    """Back-propagate one MGDA-UB step and return task → α (for logging).

    Parameters downstream of ``shared`` (the heads) receive the gradient of ``Σ_t L_t``, i.e. each head
    the gradient of its own loss; parameters upstream of ``shared`` (the encoder) receive the gradient
    of ``Σ_t α_t L_t``, pushed back through ``shared``. Gradients accumulate into ``.grad`` as with
    ``loss.backward()``; zero them before and step the optimiser after. One backward pass through the
    heads and the encoder: a hook on ``shared`` swaps the incoming ``Σ_t ∂L_t/∂E`` for
    ``Σ_t α_t ∂L_t/∂E``.
    """
    grads = _task_gradients(shared, task_losses)
    alpha = _weights_from_grads(grads, task_losses, normalization, max_iter, tol)
    weighted = sum(alpha[t] * grads[t].detach() for t in task_losses)

    handle = shared.register_hook(lambda _incoming: weighted)
    try:
        total = sum(task_losses.values())
        total.backward()
    finally:
        handle.remove()
    return alpha
