"""The baseline models (MLP, NoPoolCNN, CNN, RCNet): shapes, paper sizes and the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import xrdbench.models.cnn  # noqa: F401 - importing registers the models
import xrdbench.models.mlp  # noqa: F401
import xrdbench.models.rcnet  # noqa: F401
from xrdbench.errors import ConfigError
from xrdbench.models.registry import build_model

BASELINES = ("mlp", "nopool_cnn", "cnn", "rcnet")
TASKS = {"space_group": 230}
GRID_8500 = np.linspace(5.0, 90.0, 8500)
GRID_2048 = np.linspace(5.0, 90.0, 2048)


def _outputs(model, n_bins: int, batch: int = 2) -> dict[str, torch.Tensor]:
    model.eval()
    with torch.no_grad():
        return model(torch.rand(batch, n_bins))


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("preset", ["paper", "demo"])
def test_output_shape_on_8500_points(name, preset):
    outputs = _outputs(build_model(name, preset=preset, two_theta_deg=GRID_8500, tasks=TASKS), 8500)
    assert set(outputs) == {"space_group"}
    assert outputs["space_group"].shape == (2, 230)
    assert outputs["space_group"].dtype == torch.float32


@pytest.mark.parametrize("name", BASELINES)
def test_demo_preset_on_a_2048_point_grid(name):
    tasks = {"space_group": 230, "crystal_system": 7}  # extra tasks are ignored by single-head models
    outputs = _outputs(build_model(name, preset="demo", two_theta_deg=GRID_2048, tasks=tasks), 2048)
    assert set(outputs) == {"space_group"}
    assert outputs["space_group"].shape == (2, 230)


@pytest.mark.parametrize(("name", "n_features"), [("nopool_cnn", 12_160), ("cnn", 400)])
def test_paper_cnn_flattened_sizes(name, n_features):
    model = build_model(name, preset="paper", two_theta_deg=GRID_8500, tasks=TASKS)
    assert model.n_features == n_features
    assert model.head[0].in_features == n_features


def test_paper_mlp_parameter_count():
    model = build_model("mlp", preset="paper", two_theta_deg=GRID_8500, tasks=TASKS)
    widths = [8500, 4000, 3000, 1000, 800, 230]
    expected = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    assert expected == 49_993_030
    assert sum(p.numel() for p in model.parameters()) == expected
    assert [m.p for m in model.body if isinstance(m, torch.nn.Dropout)] == [0.6, 0.5, 0.4, 0.3]


def test_rcnet_paper_schedule():
    model = build_model("rcnet", preset="paper", two_theta_deg=GRID_8500, tasks=TASKS)
    assert len(model.blocks) == 16
    assert [block.stride for block in model.blocks] == [1, 2] * 8
    assert [block.body[-1].out_channels for block in model.blocks] == [10] * 4 + [20] * 4 + [40] * 4 + [80] * 4
    assert model.stem[0].kernel_size == (30,) and model.stem[0].out_channels == 10
    model.eval()
    with torch.no_grad():
        # 8500 halves (rounding up) 8 times: 4250, 2125, 1063, 532, 266, 133, 67, 34
        assert model.feature_map(torch.rand(1, 8500)).shape == (1, 80, 34)


def test_rcnet_demo_schedule_and_any_length():
    model = build_model("rcnet", preset="demo", two_theta_deg=GRID_2048, tasks=TASKS).eval()
    assert len(model.blocks) == 4 and model.stem[0].kernel_size == (9,)
    assert [block.stride for block in model.blocks] == [2, 2, 2, 2]
    with torch.no_grad():
        assert model.feature_map(torch.rand(1, 2048)).shape == (1, 20, 128)
        assert model(torch.rand(3, 1001))["space_group"].shape == (3, 230)  # global pooling: any length


def test_rcnet_xrdecoupler_variant():
    model = build_model("rcnet", preset="paper", two_theta_deg=GRID_8500, tasks=TASKS, variant="xrdecoupler")
    assert model.n_features == 80 * 34
    assert isinstance(model.out[1], torch.nn.LeakyReLU)
    assert model.blocks[0].body[2].p == 0.2
    assert model.pool[1].out_features == 720
    # the authors' 1600 features come from a 5000-point input
    short = build_model("rcnet", preset="paper", two_theta_deg=np.zeros(5000), tasks=TASKS, variant="xrdecoupler")
    assert short.n_features == 1600
    demo = build_model("rcnet", preset="demo", two_theta_deg=GRID_2048, tasks=TASKS, variant="xrdecoupler")
    assert _outputs(demo, 2048)["space_group"].shape == (2, 230)


def test_rcnet_dry_run_leaves_batchnorm_untouched():
    model = build_model("rcnet", preset="demo", two_theta_deg=GRID_2048, tasks=TASKS, variant="xrdecoupler")
    assert model.training
    assert all(int(m.num_batches_tracked) == 0 for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d))


@pytest.mark.parametrize("variant", ["rcnet", "xrdecoupler"])
def test_rcnet_confidence_head(variant):
    model = build_model("rcnet", preset="demo", two_theta_deg=GRID_2048, tasks=TASKS, variant=variant,
                        confidence=True)
    outputs = _outputs(model, 2048, batch=5)
    assert outputs["space_group"].shape == (5, 230)
    assert outputs["confidence"].shape == (5, 1)
    assert bool(((outputs["confidence"] >= 0) & (outputs["confidence"] <= 1)).all())


def test_models_train_one_step():
    for name in BASELINES:
        model = build_model(name, preset="demo", two_theta_deg=GRID_2048, tasks=TASKS)
        logits = model(torch.rand(4, 2048))["space_group"]
        torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 229])).backward()
        assert all(p.grad is not None for p in model.parameters())


def test_registry_unknown_name_and_bad_options():
    with pytest.raises(ValueError, match="models"):
        build_model("no_such_model", two_theta_deg=GRID_2048, tasks=TASKS)
    with pytest.raises(ConfigError, match="models.mlp.*widht"):
        build_model("mlp", two_theta_deg=GRID_2048, tasks=TASKS, widht=3)
    with pytest.raises(ConfigError, match="models.cnn.*preset"):
        build_model("cnn", preset="huge", two_theta_deg=GRID_2048, tasks=TASKS)
    with pytest.raises(ConfigError, match="models.rcnet.*variant"):
        build_model("rcnet", two_theta_deg=GRID_2048, tasks=TASKS, variant="other")
    with pytest.raises(ConfigError, match="space_group"):
        build_model("mlp", two_theta_deg=GRID_2048, tasks={"crystal_system": 7})


def test_cnn_grid_too_short_and_wrong_input_length():
    with pytest.raises(ConfigError, match="2048 points is too short"):
        build_model("cnn", preset="paper", two_theta_deg=GRID_2048, tasks=TASKS)
    model = build_model("cnn", two_theta_deg=GRID_2048, tasks=TASKS)
    with pytest.raises(ValueError, match=r"\(B, 2048\)"):
        model(torch.rand(2, 2000))
