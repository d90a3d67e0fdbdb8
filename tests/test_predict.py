"""xrdbench.predict: reading measured patterns, wavelength conversion, resampling, scaling, prediction."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
import torch

from xrdbench.errors import XrdbenchError
from xrdbench.evaluate.single_phase import ranked_space_groups, softmax
from xrdbench.models.registry import build_model
from xrdbench.predict import (
    add_predict_command,
    convert_wavelength,
    format_predictions,
    input_normalization,
    normalize_pattern,
    predict_arrays,
    predict_patterns,
    predictions_frame,
    prepare_input,
    read_pattern,
    resample_to_grid,
    write_predictions,
)
from xrdbench.predict.patterns import MeasuredPattern
from xrdbench.simulate.grids import Grid
from xrdbench.symmetry import space_group_table
from xrdbench.augment.normalize import dataset_normalization
from xrdbench.train.checkpoint import write_spec

CU, MO = 1.54056, 0.70930
# The demo CNN needs at least ~1200 bins.
MODEL_GRID = Grid("tiny", 5.0, 65.0, 1200)


def gaussian_peaks(two_theta, centres, heights=None, sigma=0.08):
    heights = np.ones(len(centres)) if heights is None else np.asarray(heights, dtype=float)
    two_theta = np.asarray(two_theta, dtype=float)[:, None]
    return (heights * np.exp(-0.5 * ((two_theta - np.asarray(centres)) / sigma) ** 2)).sum(axis=1)


def local_maxima(x, y, min_height):
    inner = (y[1:-1] > y[:-2]) & (y[1:-1] >= y[2:]) & (y[1:-1] > min_height)
    return np.asarray(x)[1:-1][inner]


# ---------------------------------------------------------------- reading


@pytest.mark.parametrize("name, text", [
    ("a.xy", "# sample A, Cu Ka\n! measured 2024\n10.0 5\n10.5 6.5\n\n11.0 7\n"),
    ("a.xye", "; GSAS-style comment\n10.0  5  0.1\n10.5\t6.5\t0.2\n11.0 7 0.3\n"),
    ("a.csv", "2theta,intensity\n10.0,5\n10.5,6.5\n11.0,7\n"),
    ("a.txt", "# comment first\nAngle  Counts  Esd\n10.0, 5, 1\n10.5 ,6.5,1\n# inline comment line\n11.0 7\n"),
])
def test_read_formats(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    pattern = read_pattern(path)
    np.testing.assert_array_equal(pattern.two_theta_deg, [10.0, 10.5, 11.0])
    np.testing.assert_array_equal(pattern.intensity, [5.0, 6.5, 7.0])
    assert pattern.path == str(path)


def test_read_reports_data_lines(tmp_path):
    path = tmp_path / "p.xy"
    path.write_text("# c\nheader\n1 2\n# c\n2 3\n")
    assert read_pattern(path).lines.tolist() == [3, 5]


@pytest.mark.parametrize("text, line, words", [
    ("# c\n10 1\n11 abc\n12 3\n", 3, "non-numeric intensity"),
    ("10 1\nx 2\n12 3\n", 2, "non-numeric 2θ"),
    ("header\n10 1\n11 nan\n", 3, "not a finite number"),
    ("header one\nheader two\n10 1\n", 2, "non-numeric"),
    ("# c\n10\n11\n", 2, "single column"),
    ("10 1\n11 2\n# c\n10.5 3\n", 4, "must increase"),
    ("10 1\n11 2\n11 3\n", 3, "must increase"),
    ("# only one point\n10 1\n", 2, "at least 2 points"),
    ("# nothing\n\n# at all\n", 3, "at least 2 points"),
])
def test_read_errors_name_file_and_line(tmp_path, text, line, words):
    path = tmp_path / "bad.xy"
    path.write_text(text)
    with pytest.raises(XrdbenchError) as error:
        read_pattern(path)
    message = str(error.value)
    assert str(path) in message and f"line {line}" in message and words in message


def test_missing_file_is_named(tmp_path):
    with pytest.raises(XrdbenchError, match="nope.xy"):
        read_pattern(tmp_path / "nope.xy")


# ---------------------------------------------------------------- wavelength


def test_wavelength_round_trip_keeps_peaks():
    two_theta = np.arange(5.0, 120.0, 0.01)
    peaks = [12.3, 25.0, 47.5, 88.8, 110.2]
    intensity = gaussian_peaks(two_theta, peaks)
    mo, kept = convert_wavelength(two_theta, CU, MO)
    assert kept.all() and np.all(np.diff(mo) > 0) and mo[-1] < two_theta[-1]
    # The d-spacing of every point is unchanged.
    d_cu = CU / (2 * np.sin(np.radians(two_theta / 2)))
    np.testing.assert_allclose(MO / (2 * np.sin(np.radians(mo / 2))), d_cu, rtol=1e-12)
    back, kept_back = convert_wavelength(mo, MO, CU)
    assert kept_back.all()
    np.testing.assert_allclose(back, two_theta, atol=1e-9)
    np.testing.assert_allclose(local_maxima(back, intensity, 0.5), peaks, atol=1e-6)


def test_wavelength_drops_angles_that_do_not_exist():
    two_theta = np.array([20.0, 40.0, 100.0, 150.0])
    converted, kept = convert_wavelength(two_theta, MO, CU)  # longer wavelength: high angles leave the sphere
    assert kept.tolist() == [True, True, False, False]
    assert np.all(converted > two_theta[kept])


# ---------------------------------------------------------------- resampling and scaling


@pytest.mark.parametrize("step", [0.005, 0.013, 0.1, 0.02])
def test_resampling_reproduces_peak_position(step):
    grid = Grid("g", 10.0, 40.0, 1500)  # 0.02° bins
    measured = np.arange(8.0, 42.0, step)
    peak = 23.456
    x, mask = resample_to_grid(measured, gaussian_peaks(measured, [peak], sigma=0.1), grid)
    assert mask.all() and x.dtype == np.float32
    # The strongest bin is within half a measured step (or one bin) of the peak, and the peak's
    # centroid on the grid is the true position to a fraction of a bin.
    centres = grid.two_theta_deg
    assert abs(centres[np.argmax(x)] - peak) <= max(step / 2, grid.bin_width_deg) + 1e-9
    near = np.abs(centres - peak) < 1.0
    centroid = np.sum(centres[near] * x[near]) / np.sum(x[near])
    assert abs(centroid - peak) < 0.25 * grid.bin_width_deg


def test_resampling_on_grid_is_identity_and_fine_data_are_bin_averaged():
    grid = Grid("g", 10.0, 20.0, 100)
    values = np.random.default_rng(0).random(100).astype(np.float32)
    x, mask = resample_to_grid(grid.two_theta_deg, values, grid)
    np.testing.assert_array_equal(x, values)
    assert mask.all()
    # A step function sampled finely: each bin gets its mean level, as a detector of the bin's width would record.
    fine = np.linspace(10.0, 20.0, 10001)
    level = np.repeat(np.arange(100.0), 100)
    x, _ = resample_to_grid(fine, np.append(level, 99.0), grid, method="average")
    np.testing.assert_allclose(x[1:-1], np.arange(1.0, 99.0), atol=0.02)


def test_uncovered_bins_are_masked():
    grid = Grid("g", 10.0, 20.0, 100)  # centres 10.05 … 19.95
    measured = np.linspace(12.0, 15.0, 301)
    x, mask = resample_to_grid(measured, np.ones_like(measured) + 1.0, grid)
    centres = grid.two_theta_deg
    inside = (centres >= 12.0) & (centres <= 15.0)
    np.testing.assert_array_equal(mask, inside.astype(np.uint8))
    assert np.all(x[~inside] == 0) and np.allclose(x[inside], 2.0)
    normalized = normalize_pattern(x, mask, {"method": "max", "value": 100.0})
    assert np.all(normalized[~inside] == 0) and np.allclose(normalized[inside], 100.0)


def test_normalize_percentile_matches_training_convention():
    from xrdbench.augment.normalize import percentile_normalize

    rng = np.random.default_rng(1)
    x = rng.random((3, 50)).astype(np.float32) * 7
    mask = (rng.random((3, 50)) > 0.2).astype(np.uint8)
    x = np.where(mask, x, 0).astype(np.float32)
    expected = percentile_normalize(x, mask, 99.0)
    np.testing.assert_allclose(normalize_pattern(x, mask, {"method": "percentile", "q": 99.0}), expected, rtol=1e-6)


def test_input_normalization_is_what_training_recorded():
    assert dataset_normalization({"kind": "clean"}) == {"method": "max", "value": 100.0}
    assert dataset_normalization({"kind": "mixture", "augment": {"normalize_percentile": 98.0}}) == \
        {"method": "percentile", "q": 98.0}
    assert dataset_normalization({"kind": "single_phase", "augment": {"normalize": False}}) == \
        {"method": "max", "value": 1.0}
    recorded = {"method": "percentile", "q": 95.0}
    assert input_normalization({"normalization": recorded}) == recorded
    with pytest.raises(XrdbenchError, match="runs/cnn/model.json: no 'normalization'"):
        input_normalization({"kind": "single_phase"}, "runs/cnn")


def test_range_outside_grid_names_file_and_lines(tmp_path):
    spec = {"grid": {"name": "g", "two_theta_min_deg": 10.0, "two_theta_max_deg": 20.0, "n_bins": 100},
            "kind": "single_phase", "dataset": "mof", "wavelength_angstrom": CU,
            "normalization": {"method": "max", "value": 100.0}}
    path = tmp_path / "far.xy"
    path.write_text("# far away\n30 1\n31 2\n32 1\n")
    with pytest.raises(XrdbenchError) as error:
        prepare_input(read_pattern(path), spec)
    assert str(path) in str(error.value) and "lines 2-4" in str(error.value) and "covers no bin" in str(error.value)
    # Converting to a longer wavelength leaves too few points.
    path.write_text("100 1\n150 2\n170 1\n")
    with pytest.raises(XrdbenchError) as error:
        prepare_input(read_pattern(path), spec, wavelength_angstrom=MO * 0.5)
    assert str(path) in str(error.value) and "lines 1-3" in str(error.value)


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("cnn", preset="demo", two_theta_deg=MODEL_GRID.two_theta_deg, tasks={"space_group": 230})
    directory = tmp_path_factory.mktemp("results") / "models" / "mof" / "cnn"
    directory.mkdir(parents=True)
    spec = {"model": "cnn", "preset": "demo", "overrides": {}, "tasks": {"space_group": 230}, "kind": "single_phase",
            "grid": {"name": MODEL_GRID.name, "two_theta_min_deg": MODEL_GRID.two_theta_min_deg,
                     "two_theta_max_deg": MODEL_GRID.two_theta_max_deg, "n_bins": MODEL_GRID.n_bins},
            "wavelength_angstrom": CU, "input_scale": 0.01, "dataset": "mof",
            "normalization": {"method": "max", "value": 100.0}}
    write_spec(directory, spec)
    torch.save({"model": model.state_dict(), "epoch": 0}, directory / "best.pt")
    return directory


def on_grid_pattern():
    """A clean-like pattern on the model grid, strongest bin exactly 100 (the clean training scale)."""
    x = gaussian_peaks(MODEL_GRID.two_theta_deg, [12.0, 20.5, 33.3, 41.0, 58.8], [100, 40, 75, 20, 55], sigma=0.1)
    x = (x / x.max() * 100).astype(np.float32)
    x[np.argmax(x)] = 100.0
    return x


def write_xy(path, two_theta, intensity):
    with open(path, "w") as handle:
        handle.write("# 2theta intensity\n")
        for t, i in zip(two_theta, intensity, strict=True):
            handle.write(f"{float(t)!r} {float(i)!r}\n")


def test_predict_matches_direct_forward(tmp_path, model_dir):
    x = on_grid_pattern()
    path = tmp_path / "sample.xy"
    write_xy(path, MODEL_GRID.two_theta_deg, x)
    [result] = predict_patterns([path], model_dir, top_k=5)

    model = build_model("cnn", preset="demo", two_theta_deg=MODEL_GRID.two_theta_deg, tasks={"space_group": 230})
    model.load_state_dict(torch.load(model_dir / "best.pt", weights_only=False)["model"])
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x)[None] * 0.01)["space_group"].double().numpy()
    ranked = ranked_space_groups(logits, 5)[0]
    probabilities = softmax(logits)[0]
    assert [entry["space_group"] for entry in result["top_k"]] == ranked.tolist()
    assert [entry["probability"] for entry in result["top_k"]] == probabilities[ranked - 1].tolist()
    symbols = space_group_table()["international_short"]
    assert [entry["symbol"] for entry in result["top_k"]] == [symbols[g] for g in ranked]
    assert result["measured_fraction"] == 1.0 and result["normalization"]["value"] == 100.0
    assert result["superclasses"] == {}

    # The same pattern at Mo Kα, converted back, gives nearly the same input.
    mo, _ = convert_wavelength(MODEL_GRID.two_theta_deg, CU, MO)
    path_mo = tmp_path / "sample_mo.xy"
    write_xy(path_mo, mo, x)
    [result_mo] = predict_patterns([path_mo], model_dir, wavelength_angstrom=MO)
    assert result_mo["top_k"][0]["space_group"] == ranked[0]


def test_writers_and_command(tmp_path, model_dir, capsys):
    x = on_grid_pattern()
    paths = []
    for name in ("a.xy", "b.csv"):
        paths.append(tmp_path / name)
        write_xy(paths[-1], MODEL_GRID.two_theta_deg[100:900], x[100:900])
    parser = argparse.ArgumentParser()
    add_predict_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["predict", *map(str, paths), "--model", str(model_dir), "--top-k", "3",
                              "--out", str(tmp_path / "out.csv")])
    assert args.threads == 1
    results = args.handler(args)
    printed = capsys.readouterr().out
    assert "a.xy" in printed and "b.csv" in printed and "rank" in printed
    frame = pd.read_csv(tmp_path / "out.csv")
    assert len(frame) == 6 and list(frame["rank"]) == [1, 2, 3, 1, 2, 3]
    assert results[0]["measured_fraction"] == pytest.approx(800 / 1200)
    write_predictions(results, tmp_path / "out.json")
    loaded = json.loads((tmp_path / "out.json").read_text())
    assert loaded[1]["top_k"][0]["space_group"] == results[1]["top_k"][0]["space_group"]
    with pytest.raises(XrdbenchError, match="csv or .json"):
        write_predictions(results, tmp_path / "out.txt")


class _Heads(torch.nn.Module):
    """Fixed outputs, to test the decoding of heads the CNN does not have."""

    def __init__(self, outputs):
        super().__init__()
        self.outputs = outputs

    def forward(self, x):
        return {name: value.expand(len(x), *value.shape[1:]) for name, value in self.outputs.items()}


def test_superclass_heads_and_consistency():
    logits = torch.full((1, 230), -5.0)
    logits[0, 224] = 5.0  # Fm-3m, cubic, F
    crystal = torch.zeros((1, 7))
    crystal[0, 6] = 4.0  # index 6 of crystal_system: the label last in space-group order
    from xrdbench.symmetry import superclass_index

    labels = list(superclass_index("crystal_system"))
    centring = torch.zeros((1, len(superclass_index("centring"))))
    centring[0, list(superclass_index("centring")).index("F")] = 3.0
    spec = {"kind": "single_phase", "input_scale": 0.01}
    model = _Heads({"space_group": logits, "crystal_system": crystal, "centring": centring})
    [result] = predict_arrays(model, spec, np.zeros((1, 10)), top_k=2)
    assert result["top_k"][0]["space_group"] == 225 and result["top_k"][0]["symbol"] == "Fm-3m"
    assert result["superclasses"]["crystal_system"]["prediction"] == labels[6] == "cubic"
    assert result["superclasses"]["crystal_system"]["consistent"]
    assert result["superclasses"]["centring"] == {"prediction": "F", "probability": pytest.approx(
        float(torch.softmax(centring, 1)[0].max())), "from_top1": "F", "consistent": True}
    crystal[0] = 0
    crystal[0, 0] = 4.0  # triclinic
    [result] = predict_arrays(_Heads({"space_group": logits, "crystal_system": crystal}), spec, np.zeros((1, 10)))
    assert not result["superclasses"]["crystal_system"]["consistent"]
    assert "DIFFERS" in format_predictions([{"pattern": "p", **result}])


def test_multi_phase_decoding():
    presence = torch.full((1, 230), -4.0)
    presence[0, [13, 224]] = torch.tensor([2.0, 0.5])  # P2_1/c, Fm-3m
    spec = {"kind": "multi_phase", "input_scale": 1.0}
    [result] = predict_arrays(_Heads({"presence": presence}), spec, np.zeros((1, 4)))
    assert [p["space_group"] for p in result["phases"]] == [14, 225]
    [result] = predict_arrays(_Heads({"presence": presence}), {**spec, "threshold": 0.7}, np.zeros((1, 4)))
    assert [p["space_group"] for p in result["phases"]] == [14]

    slots = torch.full((1, 5, 231), -5.0)
    slots[0, :, 230] = 5.0  # every slot NONE …
    slots[0, 0, 230], slots[0, 0, 61] = -5.0, 5.0  # … but slot 0: Pnma (62)
    slots[0, 1, 230], slots[0, 1, 61] = -5.0, 3.0  # slot 1: Pnma again, less sure
    slots[0, 2, 230], slots[0, 2, 0] = 2.0, 1.5  # slot 2: P1 next, but NONE has p > 0.5: gated off
    slots[0, 3, 230], slots[0, 3, 1] = 0.0, 0.5  # slot 3: P-1 (2), NONE at p ≈ 0.24: on
    [result] = predict_arrays(_Heads({"slot_logits": slots}), spec, np.zeros((1, 4)))
    assert [p["space_group"] for p in result["phases"]] == [62, 2]
    assert result["phases"][0]["probability"] == pytest.approx(float(torch.softmax(slots[0, 0], 0)[61]))
    slots[0, 2, 230], slots[0, 2, 0] = -5.0, 1.0  # slot 2 now sure: on at gate 0.9; slot 3 (0.76) off
    [result] = predict_arrays(_Heads({"slot_logits": slots}), {**spec, "gate": 0.9}, np.zeros((1, 4)))
    assert [p["space_group"] for p in result["phases"]] == [62, 1]
    frame = predictions_frame([{"pattern": "p", **result}])
    assert frame["space_group"].tolist() == [62, 1]
    text = format_predictions([{"pattern": "p", **result}])
    assert "Pnma" in text


def test_prepare_input_uses_wavelength_and_masks(model_dir):
    from xrdbench.train.checkpoint import read_spec

    spec = read_spec(model_dir)
    two_theta = np.arange(20.0, 40.0, 0.01)
    pattern = MeasuredPattern("p.xy", two_theta, gaussian_peaks(two_theta, [30.0]) * 5000, np.arange(len(two_theta)))
    x, mask, info = prepare_input(pattern, spec)
    assert x.max() == pytest.approx(100.0, rel=1e-6) and mask.sum() == 400 and info["n_points"] == len(two_theta)
    peak_bin = MODEL_GRID.bin_index(np.array([30.0]))[0]
    assert abs(int(np.argmax(x)) - peak_bin) <= 1
    # Given at Mo Kα, the peak moves to the angle with the same d-spacing at Cu Kα.
    pattern = MeasuredPattern("p.xy", two_theta, gaussian_peaks(two_theta, [25.0]) * 5000, np.arange(len(two_theta)))
    x_mo, mask_mo, _ = prepare_input(pattern, spec, wavelength_angstrom=MO)
    expected = convert_wavelength(np.array([25.0]), MO, CU)[0][0]  # 56.1°
    assert abs(MODEL_GRID.two_theta_deg[np.argmax(x_mo)] - expected) <= MODEL_GRID.bin_width_deg
    lowest = convert_wavelength(two_theta[:1], MO, CU)[0][0]  # 44.5°; the top converts beyond the grid
    assert mask_mo.sum() == np.sum(MODEL_GRID.two_theta_deg >= lowest)
    with pytest.raises(XrdbenchError, match="no wavelength"):
        prepare_input(pattern, {k: v for k, v in spec.items() if k != "wavelength_angstrom"}, wavelength_angstrom=MO)
