import numpy as np
import pytest
import torch

import xrdbench.models.xrdecoupler  # noqa: F401 - registers the model
from xrdbench.models.registry import build_model
from xrdbench.models.xrdecoupler import XRDecoupler
from xrdbench.train.mgda import mgda_backward

TASKS = {"space_group": 230, "crystal_system": 7, "bravais_lattice": 14, "point_group": 32}


def _grid(n):
    return np.linspace(5.0, 90.0, n).astype(np.float32)


def _model(preset="demo", n=2048, **kw):
    torch.manual_seed(0)
    return build_model("xrdecoupler", preset=preset, two_theta_deg=_grid(n), tasks=TASKS, **kw)


def _check_out(out, b, emb=None):
    for task, n in TASKS.items():
        assert out[task].shape == (b, n)
        assert torch.isfinite(out[task]).all()
    if emb is not None:
        assert out["embedding"].shape == (b, emb)


@pytest.mark.parametrize("n", [8500, 2048, 1001])
def test_demo_shapes_train_and_backward(n):
    m = _model("demo", n).train()
    x = torch.rand(3, n)
    out = m(x, return_embedding=True)
    _check_out(out, 3, 64)
    assert set(out) == set(TASKS) | {"embedding"}
    assert set(m(x)) == set(TASKS)
    sum(out[t].sum() for t in TASKS).backward()
    assert all(p.grad is not None for p in m.heads.parameters())


def test_paper_shapes_eval():
    m = _model("paper", 8500).eval()
    assert m.global_.n_patches == 850 and m.global_.d_model == 32
    assert len(m.local.blocks) == 13
    assert [b.body[0].out_channels for b in m.local.blocks] == \
        [32, 32, 64, 128, 128, 256, 256, 512, 512, 1024, 1024, 1024, 1024]
    assert len(m.global_.encoder.layers) == 2
    with torch.no_grad():
        out = m(torch.rand(2, 8500), return_embedding=True)
    _check_out(out, 2, 64)


@pytest.mark.parametrize("kw,dim", [(dict(use_global=False), 32), (dict(use_local=False), 32), ({}, 64)])
def test_ablations_change_embedding(kw, dim):
    m = _model("demo", 1000, **kw).eval()
    assert m.embedding_dim == dim
    assert (m.local is None) == (kw.get("use_local") is False)
    assert (m.global_ is None) == (kw.get("use_global") is False)
    with torch.no_grad():
        out = m(torch.rand(2, 1000), return_embedding=True)
    _check_out(out, 2, dim)
    for task, head in m.heads.items():
        assert head.in_features == dim


def test_bad_arguments():
    with pytest.raises(ValueError):
        _model("demo", 500, use_global=False, use_local=False)
    with pytest.raises(ValueError):
        _model("huge", 500)
    with pytest.raises(ValueError):
        _model("demo", 500, not_an_option=3)
    m = _model("demo", 500)
    with pytest.raises(ValueError):
        m(torch.rand(2, 499))


def test_overrides_apply():
    m = _model("demo", 500, n_layers=2, patch_len=20)
    assert len(m.global_.encoder.layers) == 2 and m.global_.n_patches == 25


def test_zero_patches_are_masked():
    n = 1000
    m = _model("demo", n, use_local=False).eval()
    g = m.global_
    x = torch.rand(2, n) + 0.1
    x[:, 200:400] = 0.0  # patches 20..39 all zero
    x[1, 600:610] = 0.0  # patch 60 zero in the second pattern only
    mask = g.key_padding_mask(g.patches(x))
    assert mask[:, 20:40].all() and mask[1, 60] and not mask[0, 60]
    assert mask.sum() == 2 * 20 + 1
    with torch.no_grad():
        e0 = m(x, return_embedding=True)["embedding"]
        # perturbing the learnable embeddings of masked patches changes nothing
        g.patch_embedding[20:40] += 5.0 * torch.randn(20, g.patch_embedding.shape[1])
        e1 = m(x, return_embedding=True)["embedding"]
        torch.testing.assert_close(e0, e1, rtol=1e-5, atol=1e-6)
        # but perturbing an unmasked patch's embedding does
        g.patch_embedding[80] += 5.0
        e2 = m(x, return_embedding=True)["embedding"]
    assert (e2 - e1).abs().max() > 1e-4
    # and patch 60's embedding affects pattern 0 (unmasked) but not pattern 1 (masked)
    with torch.no_grad():
        g.patch_embedding[60] += 5.0
        e3 = m(x, return_embedding=True)["embedding"]
    torch.testing.assert_close(e3[1], e2[1], rtol=1e-5, atol=1e-6)
    assert (e3[0] - e2[0]).abs().max() > 1e-4


def test_partial_last_patch_padding():
    m = _model("demo", 1005, use_local=False).eval()
    assert m.global_.n_patches == 101 and m.global_.pad == 5
    with torch.no_grad():
        _check_out(m(torch.rand(2, 1005), return_embedding=True), 2, 32)


@pytest.mark.parametrize("train", [False, True])
def test_all_zero_input_is_finite(train):
    m = _model("demo", 1000).train(train)
    x = torch.zeros(4, 1000)
    x[0, 10:20] = 1.0  # one non-zero row so train-mode BatchNorm has some variance
    out = m(x, return_embedding=True)
    _check_out(out, 4, 64)
    assert torch.isfinite(out["embedding"]).all()
    if train:
        sum(out[t].sum() for t in TASKS).backward()
        assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    m.eval()
    with torch.no_grad():
        out = m(torch.zeros(2, 1000), return_embedding=True)
    assert all(torch.isfinite(v).all() for v in out.values())


def test_mgda_step_with_model():
    m = _model("demo", 600).train()
    x = torch.rand(4, 600)
    y = {t: torch.randint(0, n, (4,)) for t, n in TASKS.items()}
    out = m(x, return_embedding=True)
    losses = {t: torch.nn.functional.cross_entropy(out[t], y[t]) for t in TASKS}
    alpha = mgda_backward(out["embedding"], losses)
    assert set(alpha) == set(TASKS) and sum(alpha.values()) == pytest.approx(1.0)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.heads.parameters())
    assert m.local.proj.weight.grad is not None


def test_registered_class():
    assert isinstance(_model("demo", 300), XRDecoupler)
