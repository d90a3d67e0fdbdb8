"""Multi-phase losses: presence BCE, the exact permutation-invariant assignment loss, slot diversity."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from xrdbench.train.set_losses import (assignment_costs, assignment_loss, permutations, phase_targets,
                                       presence_loss, slot_diversity)

torch.set_num_threads(1)

C = 230
K = 5


def _random_batch(seed: int, batch: int = 12, classes: int = C, slots: int = K):
    """Random slot logits and multi-hot targets with K* = 1..slots (every count, K* = slots included)."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, slots, classes + 1, generator=generator, dtype=torch.float64) * 3
    y = torch.zeros(batch, classes)
    for b in range(batch):
        k_star = 1 + b % slots
        y[b, torch.randperm(classes, generator=generator)[:k_star]] = 1
    return logits, y


def _brute_force(logits: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Min over every injection of the true classes into the slots, unused slots → NONE, by direct loops."""
    n_slots, n_out = logits.shape[1], logits.shape[2]
    none = n_out - 1
    costs = []
    for b in range(len(logits)):
        log_p = torch.log_softmax(logits[b], dim=-1)
        truth = [int(c) for c in torch.nonzero(y[b]).flatten()]
        best = math.inf
        for chosen in itertools.permutations(range(n_slots), len(truth)):  # injection phase m → slot chosen[m]
            total = sum(-float(log_p[slot, c]) for slot, c in zip(chosen, truth))
            total += sum(-float(log_p[slot, none]) for slot in range(n_slots) if slot not in chosen)
            best = min(best, total)
        costs.append(best)
    return costs


def test_permutations_are_all_120():
    perms = permutations(5)
    assert perms.shape == (120, 5)
    assert len({tuple(p) for p in perms.tolist()}) == 120


def test_phase_targets_pad_with_none():
    y = torch.zeros(2, C)
    y[0, [7, 3]] = 1
    y[1, [0, 1, 2, 3, 229]] = 1
    assert phase_targets(y, 5).tolist() == [[3, 7, C, C, C], [0, 1, 2, 3, 229]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_assignment_matches_brute_force_over_injections(seed):
    logits, y = _random_batch(seed)
    best, _ = assignment_costs(logits, y)
    np.testing.assert_allclose(best.numpy(), _brute_force(logits, y), rtol=1e-12, atol=1e-12)
    assert assignment_loss(logits, y).item() == pytest.approx(float(np.mean(_brute_force(logits, y))), rel=1e-12)
    assert assignment_loss(logits, y, normalize=True).item() == pytest.approx(
        float(np.mean(_brute_force(logits, y))) / K, rel=1e-12)


@pytest.mark.parametrize("seed", [3, 4])
def test_assignment_equals_hungarian_with_none_columns(seed):
    logits, y = _random_batch(seed, batch=20)
    best, order = assignment_costs(logits, y)
    targets = phase_targets(y, K)
    for b in range(len(logits)):
        log_p = torch.log_softmax(logits[b], dim=-1).numpy()
        truth = np.nonzero(y[b].numpy())[0]
        # rows: slots; columns: the K* phases, then K - K* NONE columns
        columns = list(truth) + [C] * (K - len(truth))
        cost = -log_p[:, columns]
        rows, cols = linear_sum_assignment(cost)
        assert best[b].item() == pytest.approx(cost[rows, cols].sum(), rel=1e-12)
        # the returned slot order realises the minimum
        realised = sum(-log_p[order[b, j], targets[b, j]] for j in range(K))
        assert realised == pytest.approx(best[b].item(), rel=1e-12)


def test_assignment_is_invariant_to_slot_permutations_and_differentiable():
    logits, y = _random_batch(5)
    logits = logits.clone().requires_grad_(True)
    loss = assignment_loss(logits, y)
    shuffled = logits[:, torch.tensor([3, 0, 4, 1, 2])]
    assert assignment_loss(shuffled, y).item() == pytest.approx(loss.item(), rel=1e-12)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_assignment_rejects_more_phases_than_slots():
    logits = torch.zeros(1, K, C + 1)
    y = torch.zeros(1, C)
    y[0, :6] = 1
    with pytest.raises(ValueError, match="more than"):
        assignment_loss(logits, y)


def test_perfect_slots_cost_nearly_zero():
    y = torch.zeros(1, C)
    y[0, [10, 20]] = 1
    logits = torch.full((1, K, C + 1), -50.0)
    logits[0, 3, 10] = logits[0, 0, 20] = 50.0
    logits[0, [1, 2, 4], C] = 50.0
    assert assignment_loss(logits, y).item() < 1e-6


def test_presence_loss_is_mean_bce():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, C, generator=generator, dtype=torch.float64)
    y = (torch.rand(4, C, generator=generator) < 0.02).double()
    p = torch.sigmoid(logits)
    expected = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    assert presence_loss(logits, y).item() == pytest.approx(expected.item(), rel=1e-10)


def test_slot_diversity_is_mean_offdiagonal_abs_cosine():
    generator = torch.Generator().manual_seed(1)
    slots = torch.randn(3, K, 16, generator=generator, dtype=torch.float64)
    expected = []
    for b in range(3):
        for i in range(K):
            for j in range(K):
                if i != j:
                    expected.append(abs(torch.nn.functional.cosine_similarity(slots[b, i], slots[b, j], dim=0)))
    assert slot_diversity(slots).item() == pytest.approx(float(np.mean(expected)), rel=1e-10)
    same = torch.ones(2, K, 8)
    assert slot_diversity(same).item() == pytest.approx(1.0)
    orthogonal = torch.eye(K)[None]
    assert slot_diversity(orthogonal).item() == pytest.approx(0.0)
