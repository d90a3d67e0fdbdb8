import itertools

import numpy as np
import pytest
import torch
import torch.nn as nn

from xrdbench.train.mgda import mgda_backward, mgda_ub_weights, min_norm_weights, min_norm_weights_gram


def _obj(alpha, g):
    v = (torch.as_tensor(alpha, dtype=torch.float64)[:, None] * g.to(torch.float64)).sum(0)
    return float(v @ v)


def _simplex_grid(t, step):
    n = round(1 / step)
    pts = [c for c in itertools.product(range(n + 1), repeat=t - 1) if sum(c) <= n]
    a = np.array([list(c) + [n - sum(c)] for c in pts], dtype=np.float64) / n
    return a


def _grid_best(g, step):
    a = _simplex_grid(g.shape[0], step)
    gram = (g.double() @ g.double().T).numpy()
    vals = np.einsum("ni,ij,nj->n", a, gram, a)
    return float(vals.min())


def _check_simplex(alpha, tol=1e-9):
    a = alpha.numpy()
    assert np.all(a >= -tol)
    assert abs(a.sum() - 1) < tol
    assert np.all(np.isfinite(a))


@pytest.mark.parametrize("seed", range(20))
def test_two_tasks_closed_form(seed):
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(2, 7, generator=gen, dtype=torch.float64)
    if seed % 3 == 1:  # optimum at a vertex: g1 short and nearly along g2
        g[0] = 0.1 * g[1] + 0.01 * torch.randn(7, generator=gen, dtype=torch.float64)
    if seed % 3 == 2:
        g[1] = 0.2 * g[0]
    alpha = min_norm_weights(g)
    _check_simplex(alpha)
    g1, g2 = g
    expected = float(torch.clamp(((g2 - g1) @ g2) / ((g1 - g2) @ (g1 - g2)), 0, 1))
    assert float(alpha[0]) == pytest.approx(expected, abs=1e-12)
    # and the optimum over a fine 1-D search
    gs = np.linspace(0, 1, 10001)
    best = min(_obj([x, 1 - x], g) for x in gs)
    assert _obj(alpha, g) <= best + 1e-12


def test_two_tasks_vertex_cases():
    g = torch.tensor([[1.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
    assert min_norm_weights(g).tolist() == pytest.approx([1.0, 0.0])
    g = torch.tensor([[3.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    assert min_norm_weights(g).tolist() == pytest.approx([0.0, 1.0])
    g = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    assert min_norm_weights(g).tolist() == pytest.approx([0.5, 0.5])


@pytest.mark.parametrize("t,step", [(3, 0.01), (4, 0.05)])
@pytest.mark.parametrize("seed", range(12))
def test_many_tasks_beat_grid(t, step, seed):
    gen = torch.Generator().manual_seed(100 * t + seed)
    d = [2, 3, 5, 16][seed % 4]
    g = torch.randn(t, d, generator=gen, dtype=torch.float64)
    if seed % 3 == 1:
        g = g + 2.0 * torch.randn(1, d, generator=gen, dtype=torch.float64)  # correlated: optimum on a face/vertex
    if seed % 3 == 2:
        g = g * torch.tensor([10.0, 1.0] + [0.1] * (t - 2), dtype=torch.float64)[:, None]  # very different scales
    alpha = min_norm_weights(g)
    _check_simplex(alpha)
    grid = _grid_best(g, step)
    scale = float((g * g).sum(1).max())
    assert _obj(alpha, g) <= grid + 1e-9 * scale


def test_float32_input_keeps_dtype():
    g = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    alpha = min_norm_weights(g)
    assert alpha.dtype == torch.float32 and alpha.shape == (4,)
    _check_simplex(alpha.double(), tol=1e-6)  # float32 rounding of weights solved in float64


@pytest.mark.parametrize("t", [2, 3, 5])
def test_degenerate_inputs_terminate(t):
    v = torch.randn(9, dtype=torch.float64)
    cases = [
        v.repeat(t, 1),  # identical
        torch.zeros(t, 9, dtype=torch.float64),  # all zero
        torch.stack([(i + 1.0) * v for i in range(t)]),  # collinear, same direction
        torch.stack([(-1.0) ** i * (i + 1.0) * v for i in range(t)]),  # collinear, opposite directions
    ]
    z = torch.randn(t, 9, dtype=torch.float64)
    z[0] = 0
    cases.append(z)  # one zero gradient: weight all on it
    for g in cases:
        alpha = min_norm_weights(g, max_iter=50)
        _check_simplex(alpha)
    assert _obj(min_norm_weights(cases[-1]), cases[-1]) == pytest.approx(0.0, abs=1e-20)
    # opposite directions: the minimum norm is 0
    assert _obj(min_norm_weights(cases[3]), cases[3]) == pytest.approx(0.0, abs=1e-18)


def test_single_task_and_bad_input():
    assert min_norm_weights(torch.randn(1, 5)).tolist() == [1.0]
    with pytest.raises(ValueError):
        min_norm_weights(torch.randn(5))
    with pytest.raises(ValueError):
        min_norm_weights_gram(np.array([[np.nan, 0], [0, 1.0]]))


def test_iteration_cap_respected():
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(6, 40, generator=gen, dtype=torch.float64)
    for it in (0, 1, 3):
        _check_simplex(min_norm_weights(g, max_iter=it))


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4))
        self.heads = nn.ModuleDict({"a": nn.Linear(4, 3), "b": nn.Linear(4, 2), "c": nn.Linear(4, 5)})

    def forward(self, x):
        e = self.encoder(x)
        return e, {k: h(e) for k, h in self.heads.items()}


def _losses(model, x, ys):
    e, logits = model(x)
    return e, {k: nn.functional.cross_entropy(logits[k], ys[k]) for k in logits}


def test_mgda_ub_weights_on_simplex_and_normalisation():
    model = _Tiny()
    x = torch.randn(8, 5)
    ys = {"a": torch.randint(0, 3, (8,)), "b": torch.randint(0, 2, (8,)), "c": torch.randint(0, 5, (8,))}
    e, losses = _losses(model, x, ys)
    for norm in ("loss+", "loss", "l2", "none"):
        alpha = mgda_ub_weights(e, losses, normalization=norm)
        assert set(alpha) == {"a", "b", "c"}
        assert sum(alpha.values()) == pytest.approx(1.0)
        assert all(a >= 0 for a in alpha.values())
    # matches min_norm_weights on manually normalised gradients
    gs = []
    for k in ("a", "b", "c"):
        (g,) = torch.autograd.grad(losses[k], e, retain_graph=True)
        gs.append((g / (losses[k].detach() * g.norm())).reshape(-1))
    ref = min_norm_weights(torch.stack(gs))
    alpha = mgda_ub_weights(e, losses)
    assert [alpha[k] for k in "abc"] == pytest.approx(ref.tolist(), abs=1e-6)
    with pytest.raises(ValueError):
        mgda_ub_weights(e, losses, normalization="bogus")


def test_mgda_backward_head_and_encoder_gradients():
    model = _Tiny()
    x = torch.randn(8, 5)
    ys = {"a": torch.randint(0, 3, (8,)), "b": torch.randint(0, 2, (8,)), "c": torch.randint(0, 5, (8,))}

    # manual reference
    e, losses = _losses(model, x, ys)
    alpha = mgda_ub_weights(e, losses)
    head_ref = {}
    for k, head in model.heads.items():
        head_ref[k] = torch.autograd.grad(losses[k], list(head.parameters()), retain_graph=True)
    weighted = sum(alpha[k] * losses[k] for k in losses)
    enc_ref = torch.autograd.grad(weighted, list(model.encoder.parameters()), retain_graph=True)

    model.zero_grad()
    e, losses = _losses(model, x, ys)
    alpha2 = mgda_backward(e, losses)
    assert alpha2 == pytest.approx(alpha)
    assert min(alpha.values()) < 0.999  # non-trivial weighting, so the check below means something
    for k, head in model.heads.items():
        for p, r in zip(head.parameters(), head_ref[k]):
            torch.testing.assert_close(p.grad, r, rtol=1e-5, atol=1e-7)
    for p, r in zip(model.encoder.parameters(), enc_ref):
        torch.testing.assert_close(p.grad, r, rtol=1e-5, atol=1e-7)


def test_mgda_backward_encoder_differs_from_plain_sum():
    model = _Tiny()
    x = torch.randn(8, 5)
    ys = {"a": torch.randint(0, 3, (8,)), "b": torch.randint(0, 2, (8,)), "c": torch.randint(0, 5, (8,))}
    e, losses = _losses(model, x, ys)
    plain = torch.autograd.grad(sum(losses.values()), list(model.encoder.parameters()), retain_graph=True)
    model.zero_grad()
    mgda_backward(e, losses)
    diff = sum(float((p.grad - r).abs().sum()) for p, r in zip(model.encoder.parameters(), plain))
    assert diff > 1e-6
    # the hook is removed afterwards: a plain backward on a new graph is unaffected
    model.zero_grad()
    e, losses = _losses(model, x, ys)
    sum(losses.values()).backward()
    for p, r in zip(model.encoder.parameters(), plain):
        torch.testing.assert_close(p.grad, r)
