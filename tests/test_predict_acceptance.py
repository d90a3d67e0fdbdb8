"""Acceptance: ``xrdbench predict`` on measured files loses nothing against the evaluate stage.

A small CoRE MOF pipeline runs through the command line (fetch → label → split →
simulate → bank → clean dataset → train → evaluate). Each of the 50 test samples is
then written as an ``.xy`` file on its own 2θ grid, as that measurement would look
(the sample's sticks, from the bank, binned onto the file's points by the pipeline's
render rule, in counts), and ``xrdbench predict`` must score as the evaluate stage
does on the same samples.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import zarr

from xrdbench.cli import main
from xrdbench.predict.patterns import resample_to_grid
from xrdbench.predict.predict import resampling_rule
from xrdbench.simulate.grids import Grid, render_stick_lists, render_sticks

GRID = {"name": "acceptance", "two_theta_min_deg": 5.0, "two_theta_max_deg": 90.0, "n_bins": 1700}  # 0.05° bins
SIMULATION = {"engine": "fast", "wavelength_angstrom": 1.54184, "cell": "primitive", "symprec": 0.1}
N_TEST = 50


def cli(*argv):
    assert main(["--quiet", *map(str, argv)]) == 0, argv


def options(value: dict) -> str:
    return json.dumps(value)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    threads = torch.get_num_threads()  # the train and evaluate stages set it for their process: restored below
    root = tmp_path_factory.mktemp("acceptance")
    manifest = root / "coremof" / "manifest.parquet"
    cli("fetch", "coremof", "--manifest", manifest,
        "--options", options({"sets": ["2019-ASR"], "max_structures": 140, "seed": 0}))
    structures = root / "structures.parquet"
    cli("label", "--manifest", manifest, "--out", structures, "--rejected", root / "rejected.csv",
        "--options", options({"max_sites": 1500}))
    splits = root / "splits.parquet"
    cli("split", "--structures", structures, "--out", splits,
        "--options", options({"fractions": {"train": 0.5, "val": 0.1, "test": 0.4}, "seed": 0,
                              "match_duplicates": False, "balanced_per_group": 3}))
    shard = root / "shard.npz"
    cli("simulate", "--structures", structures, "--shard", 0, "--shards", 1, "--out", shard,
        "--options", options({"simulation": SIMULATION, "grid": GRID}))
    bank = root / "bank.zarr"
    cli("bank", "--structures", structures, "--out", bank, "--failed", root / "failed.csv", shard,
        "--options", options({"simulation": SIMULATION, "grid": {**GRID, "render_rule": "max"}, "chunk_rows": 16}))
    # The checkpoint is chosen on the training materials: with 13 validation materials the best
    # checkpoint is the first epoch, whose answer is the class prior whatever the input, and
    # agreement would prove nothing. Fitted to its training materials, the model's answers
    # change with the input (about 20 different top-1 groups on the 50 test samples).
    dataset = {"kind": "clean", "seed": 0, "chunk_rows": 16, "augment": {},
               "splits": {"train": {"materials": ["train"]}, "val": {"materials": ["train"]},
                          "test": {"materials": ["test"], "n_samples": N_TEST}}}
    data = {}
    for split in ("train", "val", "test"):
        data[split] = root / "datasets" / f"{split}.zarr"
        cli("augment", "--dataset", "mof", "--split", split, "--bank", bank, "--splits", splits,
            "--out", data[split], "--dask", options({"scheduler": "synchronous"}), "--options", options(dataset))
    model = root / "models" / "mof" / "cnn"
    cli("train", "--run", "cnn", "--dataset", "mof", "--train", data["train"], "--val", data["val"], "--out", model,
        "--options", options({"run": {"model": "cnn", "options": {"conv_dropout": 0.0, "head_dropout": 0.0}},
                              "preset": "demo", "device": "cpu",
                              "train": {"epochs": 80, "batch_rows": 16, "lr": 1e-3, "input_scale": 1.0}}))
    evaluation = root / "eval" / "test"
    cli("evaluate", "--model", model, "--dataset", "mof", "--split", "test", "--data", data["test"],
        "--out", evaluation, "--options", options({"device": "cpu"}))
    torch.set_num_threads(threads)
    return {"root": root, "bank": bank, "test": data["test"], "model": model, "eval": evaluation}


def measurement_grids(n: int, seed: int = 0) -> list[Grid]:
    """Each file's own 2θ points: steps finer than the model's 0.05° bins and not dividing them,
    start and end off the model's edges, wider than the model's range except one file that
    stops short of 90° (its top bins unmeasured)."""
    rng = np.random.default_rng(seed)
    grids = []
    for i in range(n):
        step = float(rng.choice([0.005, 0.0071, 0.0093, 0.01, 0.0117, 0.013, 0.0167, 0.02]))
        start = float(rng.uniform(2.0, 4.9))
        stop = 89.3 if i == n - 1 else float(rng.uniform(90.2, 110.0))
        n_points = int(round((stop - start) / step))
        grids.append(Grid(f"file{i}", start, start + n_points * step, n_points))
    return grids


def write_measurements(pipeline, directory) -> tuple[list, list[str]]:
    """The test samples as .xy files: their bank sticks binned onto each file's points, in counts."""
    test = zarr.open_group(str(pipeline["test"]), mode="r")
    bank = zarr.open_group(str(pipeline["bank"]), mode="r")
    ids = [str(i) for i in test["phase_material_id"][:, 0]]
    row_of = {str(material): row for row, material in enumerate(bank["material_id"][:])}
    offsets, two_theta, intensity = bank["stick_offsets"][:], bank["stick_two_theta_deg"][:], bank["stick_intensity"][:]
    rng = np.random.default_rng(1)
    paths = []
    for material, grid in zip(ids, measurement_grids(len(ids)), strict=True):
        row = row_of[material]
        sticks = slice(offsets[row], offsets[row + 1])
        counts = render_sticks(two_theta[sticks], intensity[sticks], grid, "max") * rng.uniform(20.0, 500.0)
        path = directory / f"{material}.xy"
        lines = [f"# {material}: simulated measurement, Cu Ka {SIMULATION['wavelength_angstrom']} A",
                 f"# 2theta {grid.two_theta_min_deg:.4f}-{grid.two_theta_max_deg:.4f} deg, "
                 f"step {grid.bin_width_deg:.4f} deg",
                 "# 2theta counts"]
        lines += [f"{t:.5f} {c:.2f}" for t, c in zip(grid.two_theta_deg, counts, strict=True)]
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths, ids


def test_predict_on_measured_files_matches_the_evaluate_stage(pipeline, tmp_path):
    evaluated = pd.read_parquet(str(pipeline["eval"]) + ".predictions.parquet")
    metrics = json.loads((pipeline["eval"].parent / "test.json").read_text())
    assert len(evaluated) == metrics["n_samples"] == N_TEST
    spec = json.loads((pipeline["model"] / "model.json").read_text())
    assert spec["dataset_kind"] == "clean" and resampling_rule(spec) == "max"

    paths, ids = write_measurements(pipeline, tmp_path)
    assert ids == evaluated["id"].tolist()
    out = tmp_path / "predictions.json"
    cli("predict", *paths, "--model", pipeline["model"], "--top-k", 5, "--out", out)
    predicted = json.loads(out.read_text())
    assert [p["pattern"] for p in predicted] == [str(p) for p in paths]
    assert {p["resampling"] for p in predicted} == {"max"}
    assert predicted[-1]["measured_fraction"] < 1.0 and all(p["measured_fraction"] == 1.0 for p in predicted[:-1])

    target = evaluated["target"].to_numpy()
    evaluate_top5 = evaluated[[f"pred_{k}" for k in range(1, 6)]].to_numpy()
    assert len(set(evaluate_top5[:, 0])) >= 10  # the model's answer depends on the pattern
    predict_top5 = np.array([[entry["space_group"] for entry in p["top_k"]] for p in predicted])
    evaluate_hits = int((evaluate_top5 == target[:, None]).any(axis=1).sum())
    predict_hits = int((predict_top5 == target[:, None]).any(axis=1).sum())
    assert evaluate_hits == round(metrics["top5"] * N_TEST)
    # The acceptance criterion: the same top-5 accuracy within one sample.
    assert abs(predict_hits - evaluate_hits) <= 1, (predict_hits, evaluate_hits)
    # Stronger: the model's top-1 answer is the same for at least 90 % of the samples.
    top1_agree = int((predict_top5[:, 0] == evaluate_top5[:, 0]).sum())
    assert top1_agree >= 0.9 * N_TEST, top1_agree
    print(f"\ntop-5 hits: evaluate {evaluate_hits}/{N_TEST}, predict {predict_hits}/{N_TEST}; "
          f"top-1 agreement {top1_agree}/{N_TEST}")


# ---------------------------------------------------------------- the resampling rule for clean models


def test_fine_sticks_are_binned_by_the_training_render_rule():
    """Sticks measured on a finer grid and binned by ``max`` give the training pattern: the strongest
    stick per bin at full height, where the bin mean dilutes, sums and splits lines."""
    grid = Grid("model", 10.0, 20.0, 200)  # 0.05° bins
    rng = np.random.default_rng(3)
    centres = grid.two_theta_deg
    # Sticks well inside their bins (a point near an edge can fall on either side of it), and a
    # weaker second line in the first one's bin, three measured points away from it.
    chosen = rng.choice(np.arange(5, 195), 40, replace=False)
    sticks = centres[chosen] + rng.uniform(-0.012, 0.012, 40)
    heights = rng.uniform(5.0, 100.0, 40)
    heights[0] = 100.0
    sticks[0] = centres[chosen[0]] - 0.012
    sticks = np.append(sticks, centres[chosen[0]] + 0.012)
    heights = np.append(heights, 60.0)
    training = render_stick_lists(np.array([0, len(sticks)]), sticks, heights, grid, "max")[0]
    fine = Grid("measured", 9.5, 20.5 + 0.0073, int(round((11.0 + 0.0073) / 0.0073)))  # 0.0073° steps
    measured = render_sticks(sticks, heights, fine, "max") * 37.0  # counts
    assert np.count_nonzero(measured) == len(sticks)

    x, mask = resample_to_grid(fine.two_theta_deg, measured, grid, fine="max")
    assert mask.all()
    np.testing.assert_allclose(x / 37.0, training, rtol=1e-6)
    x_auto, _ = resample_to_grid(fine.two_theta_deg, measured, grid, method="max")
    np.testing.assert_array_equal(x_auto, x)
    # The bin mean of the piecewise-linear curve is not the training transform: it dilutes each
    # isolated line by step / width (a uniform factor, which the max normalization would undo),
    # but adds the two lines that share a bin, so that bin comes out 1.6 times too strong.
    mean, _ = resample_to_grid(fine.two_theta_deg, measured, grid)
    ratio = mean[chosen] / (37.0 * training[chosen])
    np.testing.assert_allclose(ratio[1:], 0.0073 / 0.05, rtol=1e-4)
    assert ratio[0] == pytest.approx(1.6 * 0.0073 / 0.05, rel=1e-4)

    # A bin the measurement skips (a gap wider than a bin) takes the curve at its centre; outside: masked.
    points = fine.two_theta_deg
    keep = (points < 14.0) | (points > 14.2)
    x_gap, mask_gap = resample_to_grid(points[keep], measured[keep], grid, method="max")
    gap = (grid.bin_edges_deg[:-1] >= points[keep & (points < 14.0)][-1]) & \
        (grid.bin_edges_deg[1:] <= points[keep & (points > 14.2)][0])  # bins holding no measured point
    assert mask_gap.all() and gap.sum() == 4
    np.testing.assert_allclose(x_gap[gap], np.interp(centres[gap], points[keep], measured[keep]), rtol=1e-6)
    np.testing.assert_array_equal(x_gap[~gap], np.where(
        (grid.bin_edges_deg[1:] <= 14.0) | (grid.bin_edges_deg[:-1] > 14.2), x, x_gap)[~gap])
    x_part, mask_part = resample_to_grid(fine.two_theta_deg[fine.two_theta_deg < 15.0],
                                         measured[fine.two_theta_deg < 15.0], grid, method="max")
    np.testing.assert_array_equal(mask_part, (centres <= fine.two_theta_deg[fine.two_theta_deg < 15.0][-1]))
    np.testing.assert_array_equal(x_part[mask_part == 1], x[mask_part == 1])
    assert np.all(x_part[mask_part == 0] == 0)


def test_resampling_rule_follows_the_training_data():
    clean = {"method": "max", "value": 100.0}
    assert resampling_rule({"dataset_kind": "clean", "normalization": clean}) == "max"
    assert resampling_rule({"normalization": clean}) == "max"  # a model.json from before dataset_kind
    assert resampling_rule({"dataset_kind": "clean", "normalization": clean, "render_rule": "sum"}) == "average"
    for kind, normalization in (("single_phase", {"method": "percentile", "q": 99.0}),
                                ("mixture", {"method": "percentile", "q": 99.0}),
                                ("single_phase", {"method": "max", "value": 1.0})):
        assert resampling_rule({"dataset_kind": kind, "normalization": normalization}) == "average"
    assert resampling_rule({"normalization": {"method": "max", "value": 1.0}}) == "average"
