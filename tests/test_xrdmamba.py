"""XRDMamba and its selective scan: the chunked scan against the sequential reference, model shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xrdbench.models import selective_scan as ss
from xrdbench.models import xrdmamba  # noqa: F401 - registers "xrdmamba"
from xrdbench.models.registry import MODELS, build_model
from xrdbench.models.xrdmamba import PRESETS, MambaMixer, XRDMamba

TASKS = {"space_group": 230}


def scan_inputs(batch=2, length=37, d=5, n=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, length, d, generator=g, dtype=dtype)
    delta = F.softplus(torch.randn(batch, length, d, generator=g, dtype=dtype))
    A = -torch.rand(d, n, generator=g, dtype=dtype) * 3 - 0.1
    B = torch.randn(batch, length, n, generator=g, dtype=dtype)
    C = torch.randn(batch, length, n, generator=g, dtype=dtype)
    D = torch.randn(d, generator=g, dtype=dtype)
    return [t.requires_grad_() for t in (u, delta, A, B, C, D)]


def test_reference_matches_closed_form_for_one_step_and_constant_input():
    # one channel, one state, constant delta*A: h_t = sum_{s<=t} exp(dA (t-s)) * delta*b*u
    length, delta_v, a_v = 6, 0.5, -0.7
    u = torch.ones(1, length, 1, dtype=torch.float64)
    delta = torch.full_like(u, delta_v)
    A = torch.tensor([[a_v]], dtype=torch.float64)
    B = torch.ones(1, length, 1, dtype=torch.float64)
    C = torch.ones_like(B)
    y = ss.selective_scan_reference(u, delta, A, B, C, torch.zeros(1, dtype=torch.float64))
    expected = [sum(math.exp(delta_v * a_v * k) * delta_v for k in range(t + 1)) for t in range(length)]
    torch.testing.assert_close(y[0, :, 0], torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("inner", ["loop", "parallel"])
@pytest.mark.parametrize("chunk_size", [1, 5, 8, 16, 37, 64])
def test_chunked_scan_matches_reference_values_and_gradients(chunk_size, inner):
    x = scan_inputs()
    ref = ss.selective_scan_reference(*x)
    out = ss.selective_scan_chunked(*x, chunk_size=chunk_size, inner=inner)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    w = torch.randn_like(ref)                      # a generic upstream gradient
    g_ref = torch.autograd.grad((ref * w).sum(), x)
    g_out = torch.autograd.grad((out * w).sum(), x)
    for a, b in zip(g_out, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_chunked_scan_gradcheck():
    x = scan_inputs(batch=1, length=7, d=2, n=3, seed=1)
    assert torch.autograd.gradcheck(lambda *t: ss.selective_scan_chunked(*t, chunk_size=3), x)


def test_chunked_scan_without_skip_and_stable_for_large_decay():
    x = scan_inputs(length=50, seed=2)
    with torch.no_grad():
        x[1].mul_(40.0)                            # delta*A down to about -500: a cumsum-exp form would overflow
    ref = ss.selective_scan_reference(*x[:5])
    out = ss.selective_scan_chunked(*x[:5], chunk_size=16)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


def test_chunked_scan_float32_and_bad_arguments():
    x = [t.detach().float() for t in scan_inputs(length=100, seed=3)]
    torch.testing.assert_close(ss.selective_scan_chunked(*x, chunk_size=32), ss.selective_scan_reference(*x),
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="chunk_size"):
        ss.selective_scan_chunked(*x, chunk_size=0)
    with pytest.raises(ValueError, match="inner"):
        ss.selective_scan_chunked(*x, inner="bogus")


def test_dispatcher_falls_back_to_pytorch_on_cpu(monkeypatch):
    x = [t.detach() for t in scan_inputs(seed=4)]
    called = []

    def kernel(*args, **kwargs):  # pragma: no cover - must not run on CPU tensors
        called.append(True)
        raise AssertionError("CUDA kernel called on CPU tensors")

    monkeypatch.setattr(ss, "_mamba_ssm_scan_fn", lambda: kernel)
    torch.testing.assert_close(ss.selective_scan(*x, chunk_size=8), ss.selective_scan_reference(*x))
    assert not called
    if not torch.cuda.is_available():
        assert not ss.mamba_ssm_available()


def test_mixer_initialisation():
    mixer = MambaMixer(16, d_state=32, expand=2, d_conv=3, dt_min=0.001, dt_max=0.1)
    assert mixer.dt_rank == 1 and mixer.d_inner == 32
    dt = F.softplus(mixer.dt_proj.bias)
    assert dt.min() >= 0.001 - 1e-6 and dt.max() <= 0.1 + 1e-6
    torch.testing.assert_close(-torch.exp(mixer.A_log), -torch.arange(1.0, 33.0).repeat(32, 1))
    assert mixer.conv.groups == 32 and mixer.conv.kernel_size == (3,)


def test_mixer_is_causal():
    torch.manual_seed(0)
    mixer = MambaMixer(8, d_state=4, expand=2, d_conv=3, dt_min=0.001, dt_max=0.1, chunk_size=4).double()
    x = torch.randn(1, 20, 8, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 12:] += 1.0
    y, y2 = mixer(x), mixer(x2)
    torch.testing.assert_close(y[:, :12], y2[:, :12])
    assert not torch.allclose(y[:, 12:], y2[:, 12:])


def test_paper_preset_numbers():
    cfg = PRESETS["paper"]
    assert (cfg.n_layers, cfg.d_model, cfg.d_state, cfg.expand, cfg.d_conv) == (8, 16, 32, 2, 3)
    assert cfg.channels == (32, 32, 64, 64, 128, 128, 256, 256, 256, 512, 512, 1024, 1024)
    assert cfg.head_hidden == 512 and cfg.dropout == 0.2


@pytest.mark.parametrize("n_bins", [8500, 2048])
def test_demo_output_shape_and_backward(n_bins):
    torch.manual_seed(0)
    model = XRDMamba(preset="demo", two_theta_deg=np.linspace(5, 90, n_bins), tasks={**TASKS, "crystal_system": 7})
    out = model(torch.rand(2, n_bins))
    assert out["space_group"].shape == (2, 230) and out["crystal_system"].shape == (2, 7)
    assert torch.isfinite(out["space_group"]).all()
    out["space_group"].sum().backward()
    assert model.embedding.grad is not None and model.layers[0].mixer.A_log.grad is not None


def test_paper_preset_on_a_short_grid():
    torch.manual_seed(0)
    model = XRDMamba(preset="paper", two_theta_deg=np.linspace(5, 90, 512), tasks=TASKS).eval()
    assert len(model.layers) == 8 and len(model.cnn) == 13
    with torch.no_grad():
        out = model(torch.rand(2, 512))
    assert out["space_group"].shape == (2, 230)


def test_registry_builds_by_name_with_overrides():
    assert "xrdmamba" in MODELS
    model = build_model("xrdmamba", preset="demo", two_theta_deg=np.linspace(5, 90, 256), tasks=TASKS,
                        n_layers=1, channels=[4, 8])
    assert isinstance(model, XRDMamba) and len(model.layers) == 1 and len(model.cnn) == 2
    assert model(torch.rand(2, 256))["space_group"].shape == (2, 230)
    with pytest.raises(ValueError, match="unknown overrides"):
        build_model("xrdmamba", preset="demo", two_theta_deg=np.linspace(5, 90, 256), tasks=TASKS, bogus=1)
    with pytest.raises(ValueError, match="unknown preset"):
        build_model("xrdmamba", preset="huge", two_theta_deg=np.linspace(5, 90, 256), tasks=TASKS)
    with pytest.raises(ValueError, match="shape"):
        model(torch.rand(2, 255))
