"""Multi-phase models: shapes at both presets, RoPE relative positions, masks excluding windowed-out tokens."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xrdbench.errors import ConfigError
from xrdbench.models import MODELS
from xrdbench.models.phase_frontend import PhaseFrontEnd, staged_pool
from xrdbench.models.phase_heads import PhaseClusterHead, PresenceHead, masked_mean, slot_gate
from xrdbench.models.registry import build_model
from xrdbench.models.rope_transformer import RoPESelfAttention, RoPETransformerEncoder, apply_rope, rope_angles
from xrdbench.models.token_cnn import TokenCNNEncoder

torch.set_num_threads(1)

NAMES = ("multilabel_cnn", "multilabel_transformer", "phase_cluster_transformer")
TASKS = {"space_group": 230}
GRID_2048 = np.linspace(5.0, 120.0, 2048)


def _expected_keys(name: str, batch: int, d_model: int) -> dict[str, tuple[int, ...]]:
    if name == "phase_cluster_transformer":
        return {"slot_logits": (batch, 5, 231), "slots": (batch, 5, d_model)}
    return {"presence": (batch, 230)}


def _run(model, x, mask=None):
    model.eval()
    with torch.no_grad():
        return model(x, mask)


def _window_mask(batch: int, n_bins: int, lo: int, hi: int) -> torch.Tensor:
    mask = torch.zeros(batch, n_bins)
    mask[:, lo:hi] = 1
    return mask


# ---------------------------------------------------------------- shapes and presets


def test_models_are_registered():
    assert set(NAMES) <= set(MODELS)


@pytest.mark.parametrize("name", NAMES)
def test_demo_output_shapes(name):
    model = build_model(name, preset="demo", two_theta_deg=GRID_2048, tasks={**TASKS, "crystal_system": 7})
    x = torch.rand(3, 2048)
    outputs = _run(model, x, _window_mask(3, 2048, 200, 1800))
    expected = _expected_keys(name, 3, model.config["d_model"])
    assert {key: tuple(value.shape) for key, value in outputs.items()} == expected
    assert all(value.dtype == torch.float32 and torch.isfinite(value).all() for value in outputs.values())
    # no mask = everything measured
    unmasked = _run(model, x)
    ones = _run(model, x, torch.ones(3, 2048))
    for key in expected:
        torch.testing.assert_close(unmasked[key], ones[key])


@pytest.mark.parametrize("name", NAMES)
def test_demo_trains_one_step(name):
    model = build_model(name, preset="demo", two_theta_deg=GRID_2048, tasks=TASKS)
    model.train()
    outputs = model(torch.rand(2, 2048), _window_mask(2, 2048, 100, 1900))
    sum(value.square().mean() for value in outputs.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def _transformer_layer_params(d: int, ffn: int) -> int:
    attention = 3 * d * d + 3 * d + d * d + d
    feed_forward = d * ffn + ffn + ffn * d + d
    return attention + feed_forward + 2 * 2 * d  # two LayerNorms


@pytest.mark.parametrize("name", NAMES)
def test_paper_preset_builds_with_paper_sizes_and_runs(name):
    grid = np.linspace(5.0, 120.0, 512)  # a short grid keeps the CPU forward cheap
    model = build_model(name, preset="paper", two_theta_deg=grid, tasks=TASKS)
    config = model.config
    assert config["cnn_channels"] == (64, 128, 256, 256) and config["cnn_strides"] == (2, 2, 2, 2)
    assert config["cnn_kernels"] == (3, 7, 15) and config["cnn_dilations"] == (1, 2, 4)
    assert config["d_model"] == 768
    n_params = sum(p.numel() for p in model.parameters())
    if name == "multilabel_cnn":
        assert len(model.encoder.blocks) == 18
        assert model.encoder.dilations[:8] == (1, 2, 4, 8, 1, 2, 4, 8)
        assert model.encoder.blocks[0].conv1.kernel_size == (7,)
        block = 2 * (768 * 768 * 7 + 768)
        assert sum(p.numel() for p in model.encoder.parameters()) == 18 * block + 2 * 768
    else:
        assert (config["layers"], config["heads"], config["ffn"], config["dropout"]) == (18, 12, 4096, 0.1)
        assert sum(p.numel() for p in model.encoder.parameters()) == 18 * _transformer_layer_params(768, 4096) + 2 * 768
    assert 100e6 < n_params < 250e6, n_params
    outputs = _run(model, torch.rand(1, 512), _window_mask(1, 512, 40, 500))
    assert {key: tuple(value.shape) for key, value in outputs.items()} == _expected_keys(name, 1, 768)


def test_unknown_option_and_wrong_inputs_fail_clearly():
    with pytest.raises(ConfigError, match="models.multilabel_transformer"):
        build_model("multilabel_transformer", preset="demo", two_theta_deg=GRID_2048, tasks=TASKS, depth=3)
    model = build_model("multilabel_cnn", preset="demo", two_theta_deg=GRID_2048, tasks=TASKS)
    with pytest.raises(ValueError, match="expected input"):
        model(torch.rand(2, 1000))
    with pytest.raises(ValueError, match="mask"):
        model(torch.rand(2, 2048), torch.ones(2, 1000))


# ---------------------------------------------------------------- front-end


def test_frontend_token_masks_are_staged_pools():
    grid = np.linspace(5.0, 120.0, 200)  # not a multiple of 16: ceil at each stage
    frontend = PhaseFrontEnd(two_theta_deg=grid, d_model=8, cnn_channels=(4, 4, 4, 4), cnn_strides=(2, 2, 2, 2),
                             cnn_kernels=(3, 7, 15), cnn_dilations=(1, 2, 4), cnn_dropout=0.1).eval()
    mask = torch.zeros(2, 200)
    mask[0, 37:150] = 1
    mask[1, :] = 1
    tokens, valid = frontend(torch.rand(2, 200), mask)
    n_tokens = math.ceil(200 / 16)  # 200 → 100 → 50 → 25 → 13
    assert tokens.shape == (2, n_tokens, 8) and valid.shape == (2, n_tokens)
    assert frontend.n_tokens == n_tokens
    # token t covers bins [16t, 16t + 16): valid when any of them is measured
    expected = torch.tensor([[float(mask[0, 16 * t:16 * t + 16].max()) for t in range(n_tokens)]])
    assert torch.equal(valid[:1], expected)
    assert torch.equal(valid[1], torch.ones(n_tokens))
    _, mean = frontend.token_masks(mask)
    assert mean[0, 2].item() == pytest.approx(11 / 16)  # bins 32..47, measured from 37
    assert frontend.token_angle[0].item() == pytest.approx(-1 + (1 / 199) * 15, abs=1e-5)
    assert staged_pool(torch.arange(5.0)[None], (2,), "avg").tolist() == [[0.5, 2.5, 4.0]]


# ---------------------------------------------------------------- RoPE: relative position only


def test_rope_scores_depend_only_on_position_differences():
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, 16, 32, generator=generator)
    k = torch.randn(2, 3, 16, 32, generator=generator)
    positions = torch.arange(16.0)

    def scores(pos):
        cos, sin = rope_angles(pos, 32)
        return apply_rope(q, cos, sin) @ apply_rope(k, cos, sin).transpose(-1, -2)

    for shift in (1.0, 7.0, 53.0):
        torch.testing.assert_close(scores(positions + shift), scores(positions), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(scores(positions * 2), scores(positions), atol=1e-2)  # not absolute-invariant
    # rotation keeps norms
    cos, sin = rope_angles(positions, 32)
    torch.testing.assert_close(apply_rope(q, cos, sin).norm(dim=-1), q.norm(dim=-1))


def test_rope_attention_and_encoder_are_shift_invariant():
    torch.manual_seed(0)
    attention = RoPESelfAttention(32, 4, dropout=0.0).eval()
    x = torch.randn(2, 20, 32)
    positions = torch.arange(20.0)
    torch.testing.assert_close(attention.scores(x, positions + 11.0), attention.scores(x, positions),
                               atol=1e-4, rtol=1e-4)
    per_sample = torch.stack([positions + 3.0, positions + 40.0])  # (B, L) positions, different shifts
    torch.testing.assert_close(attention.scores(x, per_sample), attention.scores(x, positions),
                               atol=1e-4, rtol=1e-4)
    encoder = RoPETransformerEncoder(d_model=32, layers=2, heads=4, ffn=64, dropout=0.1).eval()
    valid = torch.ones(2, 20)
    valid[0, 15:] = 0
    with torch.no_grad():
        torch.testing.assert_close(encoder(x, valid, positions + 25.0), encoder(x, valid), atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- masks exclude windowed-out tokens


def _perturb_invalid(tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    noise = 100.0 * torch.randn_like(tokens)
    return torch.where(valid.unsqueeze(-1) > 0.5, tokens, noise)


def _tokens_and_valid(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randn(3, 24, 16, generator=generator)
    valid = torch.ones(3, 24)
    valid[0, :5] = 0
    valid[1, 18:] = 0
    valid[2, 3:9] = 0
    return tokens, valid


def test_transformer_attention_and_presence_pooling_ignore_invalid_tokens():
    torch.manual_seed(1)
    tokens, valid = _tokens_and_valid()
    encoder = RoPETransformerEncoder(d_model=16, layers=2, heads=4, ffn=32, dropout=0.1).eval()
    head = PresenceHead(16, 230).eval()
    with torch.no_grad():
        z, z2 = encoder(tokens, valid), encoder(_perturb_invalid(tokens, valid), valid)
        keep = valid > 0.5
        torch.testing.assert_close(z[keep], z2[keep], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(head(z, valid), head(_perturb_invalid(z, valid), valid), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(encoder(tokens, None), z, atol=1e-3)  # the mask does something
    expected = torch.stack([tokens[b][valid[b] > 0.5].mean(0) for b in range(3)])
    torch.testing.assert_close(masked_mean(tokens, valid), expected, atol=1e-5, rtol=1e-5)


def test_token_cnn_keeps_invalid_positions_out():
    torch.manual_seed(2)
    tokens, valid = _tokens_and_valid(1)
    encoder = TokenCNNEncoder(d_model=16, blocks=5, kernel=7, dilation_cycle=(1, 2, 4, 8), dropout=0.1).eval()
    with torch.no_grad():
        z, z2 = encoder(tokens, valid), encoder(_perturb_invalid(tokens, valid), valid)
    keep = valid > 0.5
    torch.testing.assert_close(z[keep], z2[keep], atol=1e-5, rtol=1e-5)


def test_slot_cross_attention_ignores_invalid_tokens():
    torch.manual_seed(3)
    tokens, valid = _tokens_and_valid(2)
    head = PhaseClusterHead(d_model=16, classes=230, slots=5, slot_layers=2, heads=4, ffn=32).eval()
    with torch.no_grad():
        out, out2 = head(tokens, valid), head(_perturb_invalid(tokens, valid), valid)
        torch.testing.assert_close(out["slot_logits"], out2["slot_logits"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out["slots"], out2["slots"], atol=1e-5, rtol=1e-5)
        # invariant to the order of the tokens
        order = torch.randperm(24)
        shuffled = head(tokens[:, order], valid[:, order])
        torch.testing.assert_close(shuffled["slot_logits"], out["slot_logits"], atol=1e-5, rtol=1e-5)
    gate = slot_gate(out["slot_logits"])
    assert gate.shape == (3, 5) and ((gate >= 0) & (gate <= 1)).all()


@pytest.mark.parametrize("name", NAMES)
def test_models_ignore_the_signal_outside_the_window(name):
    torch.manual_seed(4)
    model = build_model(name, preset="demo", two_theta_deg=GRID_2048, tasks=TASKS).eval()
    # window [16·12, 16·110): whole tokens masked on both sides
    mask = _window_mask(2, 2048, 16 * 12, 16 * 110)
    x = torch.rand(2, 2048) * mask
    changed = x + 5.0 * torch.rand(2, 2048) * (1 - mask)
    inside = x + 0.5 * torch.rand(2, 2048) * mask
    with torch.no_grad():
        reference, outside, moved = model(x, mask), model(changed, mask), model(inside, mask)
    for key in reference:
        torch.testing.assert_close(outside[key], reference[key], atol=1e-5, rtol=1e-5)
        assert not torch.allclose(moved[key], reference[key], atol=1e-4)
