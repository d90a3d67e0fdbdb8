"""Losses of the multi-phase models (multi-phase paper, Appendix A §1.4–1.5).

* :func:`presence_loss`: mean binary cross-entropy over the C classes and the batch,
  on presence logits (B, C) and a multi-hot target ``y`` (B, C).
* :func:`assignment_loss`: the exact permutation-invariant assignment loss. The
  ground-truth phases of a sample are the K* distinct space groups of its multi-hot
  ``y`` (K* ≤ K = number of slots); the loss is the minimum, over all injections of
  the K* phases into the K slots with every unused slot assigned the NONE class
  (index C, last), of the summed slot cross-entropies −log π_slot[class]. Padding
  the targets with K − K* NONE entries makes the injections exactly the
  permutations of K slots, so all K! (120 for K = 5) are enumerated at once,
  vectorised. Per-phase mixture weights are not used (the paper calls them
  optional). ``normalize=True`` divides each sample's cost by K (the paper's
  "normalised cost"; the brief's default is the plain sum).
* :func:`slot_diversity`: the mean absolute cosine similarity between distinct
  slots (off-diagonal pairs), averaged over the batch; lower = more diverse.
"""

from __future__ import annotations

import functools
import itertools

import torch
import torch.nn.functional as F

__all__ = ["assignment_costs", "assignment_loss", "permutations", "phase_targets", "presence_loss",
           "slot_diversity"]


def presence_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean BCE-with-logits over classes and samples: logits (B, C), multi-hot ``y`` (B, C)."""
    if logits.shape != y.shape:
        raise ValueError(f"presence_loss: logits {tuple(logits.shape)} and y {tuple(y.shape)} differ")
    return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))


@functools.lru_cache(maxsize=8)
def _permutations(n_slots: int) -> torch.Tensor:
    return torch.tensor(list(itertools.permutations(range(n_slots))), dtype=torch.long)


def permutations(n_slots: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """All permutations of ``range(n_slots)`` (n_slots!, n_slots), in ``itertools`` order."""
    return _permutations(int(n_slots)).to(device)


def phase_targets(y: torch.Tensor, n_slots: int) -> torch.Tensor:
    """Slot targets (B, n_slots): the classes set in ``y`` (B, C), ascending, then NONE (= C) for the rest.

    Raises when a sample has more than ``n_slots`` classes.
    """
    y = y > 0.5
    batch, classes = y.shape
    counts = y.sum(dim=1)
    if bool((counts > n_slots).any()):
        raise ValueError(f"assignment loss: a sample has {int(counts.max())} space groups, more than the "
                         f"{n_slots} slots")
    index = torch.arange(classes, device=y.device).expand(batch, classes)
    ordered = torch.where(y, index, torch.full_like(index, classes)).sort(dim=1).values  # present first, then C
    if classes >= n_slots:
        return ordered[:, :n_slots]
    return torch.cat([ordered, torch.full((batch, n_slots - classes), classes, device=y.device)], dim=1)


def assignment_costs(slot_logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample minimum assignment cost (B,) and the best slot order (B, K).

    ``slot_logits`` (B, K, C+1), NONE last; ``y`` (B, C) multi-hot. ``order[b, j]`` is
    the slot given target j of :func:`phase_targets` (the j-th present class,
    ascending, then NONE). Ties between permutations go to the first in
    ``itertools.permutations`` order.
    """
    batch, n_slots, n_out = slot_logits.shape
    if y.shape != (batch, n_out - 1):
        raise ValueError(f"assignment loss: slot_logits {tuple(slot_logits.shape)} need y ({batch}, {n_out - 1}), "
                         f"got {tuple(y.shape)}")
    targets = phase_targets(y, n_slots)  # (B, K)
    log_probs = slot_logits.log_softmax(dim=-1)  # (B, K, C+1)
    # cost[b, k, j] = -log π_{b,k}[target_{b,j}]: slot k given target j
    cost = -log_probs.gather(2, targets.unsqueeze(1).expand(batch, n_slots, n_slots))
    perms = permutations(n_slots, slot_logits.device)  # (P, K): perm[p, j] = slot of target j
    columns = torch.arange(n_slots, device=slot_logits.device)
    totals = cost[:, perms, columns].sum(dim=-1)  # (B, P)
    best, which = totals.min(dim=1)
    return best, perms[which]


def assignment_loss(slot_logits: torch.Tensor, y: torch.Tensor, *, normalize: bool = False) -> torch.Tensor:
    """Batch mean of the minimum summed slot cross-entropy (divided by K when ``normalize``)."""
    best, _ = assignment_costs(slot_logits, y)
    if normalize:
        best = best / slot_logits.shape[1]
    return best.mean()


def slot_diversity(slots: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean |cos(S_i, S_j)| over slot pairs i ≠ j and over the batch: ``slots`` (B, K, d) → scalar."""
    n_slots = slots.shape[1]
    if n_slots < 2:
        return slots.new_zeros(())
    unit = slots / slots.norm(dim=-1, keepdim=True).clamp_min(eps)
    cosine = (unit @ unit.transpose(1, 2)).abs()  # (B, K, K)
    off_diagonal = ~torch.eye(n_slots, dtype=torch.bool, device=slots.device)
    return cosine[:, off_diagonal].mean()
