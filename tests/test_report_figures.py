"""The report figures: each PNG is written from fixture pipeline outputs, and the data drawn is right."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xrdbench.report import figures
from xrdbench.report.figures import FIGURES

REPO = Path(__file__).resolve().parents[1]
MIN_PNG_BYTES = 5_000


@pytest.fixture
def captured(monkeypatch):
    """The matplotlib figures the plot functions save, in order (still inspectable after closing)."""
    saved = []
    original = figures._save

    def spy(figure, out_png, rect=None):
        saved.append(figure)
        return original(figure, out_png, rect)

    monkeypatch.setattr(figures, "_save", spy)
    return saved


def _png_ok(path: Path) -> None:
    assert path.is_file(), path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > MIN_PNG_BYTES, (path, path.stat().st_size)
    assert not list(path.parent.glob(f".{path.name}.tmp-*"))  # atomic write left no temporary


# ---------------------------------------------------------------- fixtures


def _single_history(path: Path, mgda: bool) -> pd.DataFrame:
    epochs = np.arange(6)
    frame = pd.DataFrame({"epoch": epochs, "lr": 1e-3})
    for i, task in enumerate(("space_group", "crystal_system", "bravais_lattice", "point_group")):
        frame[f"loss_{task}"] = (4.0 - i) * np.exp(-(0.3 + 0.1 * i) * epochs)
    if mgda:
        for task in ("space_group", "crystal_system", "bravais_lattice", "point_group"):
            frame[f"alpha_{task}"] = 0.25
    frame["val_loss"] = 2.0 / (1 + epochs)
    frame["val_top1"] = 0.1 * epochs
    frame["wall_s"] = 1.0
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return frame


def _spc_json(path: Path, accuracies: dict, n_wrong: int) -> dict:
    spc = {"n_samples": 100, "n_wrong": n_wrong, "lattice_type_column": "centring"}
    for prop, accuracy in accuracies.items():
        spc[prop] = {"n_correct": 0 if accuracy is None else round(accuracy * n_wrong), "accuracy": accuracy}
    data = {"top1": 0.5, "top2": 0.6, "top5": 0.8, "macro_f1": 0.3, "macro_recall": 0.3,
            "superclass_accuracy": {}, "spc": spc, "meta": {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return data


def _predictions(path: Path, target, pred) -> pd.DataFrame:
    target, pred = np.asarray(target, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    frame = pd.DataFrame({"id": [f"s{i}" for i in range(len(target))], "target": target})
    for j in range(1, 6):
        frame[f"pred_{j}"] = pred if j == 1 else (pred % 230) + j
    for j in range(1, 6):
        frame[f"prob_{j}"] = 0.5 / j
    frame["head_crystal_system"] = 3
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return frame


def _multi_history(path: Path, slot: bool) -> None:
    steps = np.arange(0, 1000, 100)
    frame = pd.DataFrame({"step": steps, "lr": 1e-4, "train_loss": 1.0 / (1 + steps / 100),
                          "val_micro_f1": 1 - np.exp(-steps / 400)})
    frame.loc[1, "val_micro_f1"] = np.nan  # a step without validation is skipped
    if slot:
        frame["slot_diversity"] = 0.8 * np.exp(-steps / 300) + 0.1
    frame["wall_s"] = 1.0
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def _strata(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    strata = []
    for k in (1, 2, 3):
        for low in (False, True):
            if k == 1 and low:
                continue  # a single phase has fraction 1: no low stratum
            strata.append({"k": k, "min_fraction_le_10pct": low, "n_samples": 10 * k,
                           "micro_f1": float(rng.uniform()), "cover@K*": float(rng.uniform()),
                           "recall@K*": float(rng.uniform())})
    return {"n_samples": 60, "threshold": 0.5, "micro_f1": 0.5, "cover@K*": 0.4, "recall@K*": 0.6,
            "cover@3K*": 0.7, "recall@3K*": 0.8, "strata": strata}


def _multi_eval(path: Path, slot: bool, seed: int) -> dict:
    data = {"n_samples": 60, "best_gate": _strata(seed), "fixed_gate": _strata(seed + 100)} if slot else _strata(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return data


def _tiny_xrdecoupler(model_dir: Path, split_path: Path, n_rows: int = 24) -> None:
    import torch
    import zarr

    from xrdbench.models import build_model
    from xrdbench.simulate.grids import Grid
    from xrdbench.train.checkpoint import write_spec

    grid = Grid("t", 5, 90, 400)
    tasks = {"space_group": 230, "crystal_system": 7}
    torch.manual_seed(0)
    model = build_model("xrdecoupler", preset="demo", two_theta_deg=grid.two_theta_deg, tasks=tasks)
    spec = {"run": "xrdecoupler", "model": "xrdecoupler", "kind": "single_phase", "preset": "demo",
            "overrides": {}, "tasks": tasks,
            "grid": {"name": "t", "two_theta_min_deg": 5, "two_theta_max_deg": 90, "n_bins": 400},
            "wavelength_angstrom": 1.5406, "input_scale": 1.0, "dataset": "mof"}
    model_dir.mkdir(parents=True, exist_ok=True)
    write_spec(model_dir, spec)
    torch.save({"model": model.state_dict()}, model_dir / "best.pt")
    rng = np.random.default_rng(0)
    group = zarr.open_group(str(split_path), mode="w")
    group.create_array("x", data=rng.uniform(0, 1, (n_rows, 400)).astype(np.float32))
    labels = np.full((n_rows, 5), -1, dtype=np.int16)
    labels[:, 0] = np.array([1, 14, 62, 79, 148, 194, 225, 82])[np.arange(n_rows) % 8]
    group.create_array("phase_space_group", data=labels)


# ---------------------------------------------------------------- single-phase figures


def test_mgda_losses(tmp_path, captured):
    mgda = _single_history(tmp_path / "xrdecoupler" / "history.csv", mgda=True)
    _single_history(tmp_path / "fixed" / "history.csv", mgda=False)
    out = figures.plot_mgda_losses(tmp_path / "xrdecoupler" / "history.csv", tmp_path / "fixed" / "history.csv",
                                   tmp_path / "fig" / "mgda.png")
    _png_ok(out)
    fixed_axis, mgda_axis = captured[0].axes
    labels = [line.get_label() for line in mgda_axis.get_lines()]
    assert labels == ["space group", "crystal system", "bravais lattice", "point group"]  # no alpha curves
    np.testing.assert_allclose(mgda_axis.get_lines()[0].get_ydata(), mgda["loss_space_group"])
    assert [line.get_color() for line in fixed_axis.get_lines()] == [line.get_color() for line in mgda_axis.get_lines()]
    # one run missing: its panel says so
    _png_ok(figures.plot_mgda_losses(None, tmp_path / "fixed" / "history.csv", tmp_path / "fig" / "one.png"))
    assert "not available" in " ".join(t.get_text() for t in captured[1].axes[1].texts)
    with pytest.raises(figures.FigureInputError, match="loss_"):
        figures.plot_mgda_losses(pd.DataFrame({"epoch": [0], "val_loss": [1.0]}), None, tmp_path / "bad.png")


def test_spc_bars_heights_are_the_json_accuracies(tmp_path, captured):
    a = {"lattice_type": 0.9, "bravais_lattice": 0.8, "crystal_system": 0.85, "point_group": 0.3}
    b = {"lattice_type": 0.95, "bravais_lattice": 0.9, "crystal_system": 0.9, "point_group": 0.6}
    none = {key: None for key in a}
    paths = {"XRDMamba": tmp_path / "a.json", "XRDecoupler": tmp_path / "b.json", "Perfect": tmp_path / "c.json"}
    _spc_json(paths["XRDMamba"], a, 40)
    _spc_json(paths["XRDecoupler"], b, 20)
    _spc_json(paths["Perfect"], none, 0)
    out = figures.plot_spc_bars(paths, tmp_path / "spc.png")
    _png_ok(out)
    frame = figures.spc_frame(paths)
    assert list(frame.index) == list(paths)
    assert frame.loc["XRDMamba", "point_group"] == 0.3 and frame.loc["XRDecoupler", "n_wrong"] == 20
    axis = captured[0].axes[0]
    heights = [bar.get_height() for bar in axis.patches]
    expected = [100 * a[k] for k in a] + [100 * b[k] for k in b]
    np.testing.assert_allclose(heights[:8], expected)
    assert all(np.isnan(h) for h in heights[8:])  # no wrong prediction: no bar, "n/a"
    assert "n/a" in [t.get_text() for t in axis.texts]
    legend = [t.get_text() for t in axis.get_legend().get_texts()]
    assert legend[0] == "XRDMamba (40 wrong of 100)"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"top1": 0.5}))
    with pytest.raises(figures.FigureInputError, match="bad.json"):
        figures.plot_spc_bars({"x": bad}, tmp_path / "bad.png")


def test_confusion_family_counts_match_a_hand_count(tmp_path, captured):
    # I4 = 79, I-4 = 82, P4 = 75, P-4 = 81; 2 (P1) is outside the family
    target = [79, 79, 79, 82, 82, 75, 81, 81, 2, 2]
    pred = [79, 75, 2, 82, 81, 75, 81, 82, 79, 2]
    _predictions(tmp_path / "a.parquet", target, pred)
    _predictions(tmp_path / "empty.parquet", [1, 2, 3], [1, 2, 4])  # no sample in the family
    _predictions(tmp_path / "none.parquet", [], [])  # no sample at all
    paths = {"CNN": tmp_path / "a.parquet", "MLP": tmp_path / "empty.parquet", "RCNet": tmp_path / "none.parquet"}
    out = figures.plot_confusion_family(paths, tmp_path / "conf.png")
    _png_ok(out)
    matrices = figures.confusion_frames(paths)
    expected = pd.DataFrame([[1, 0, 1, 0, 1],   # I4 → I4, P4, other
                             [0, 1, 0, 1, 0],   # I-4 → I-4, P-4
                             [0, 0, 1, 0, 0],   # P4 → P4
                             [0, 1, 0, 1, 0]],  # P-4 → I-4, P-4
                            index=pd.Index(["I4", "I-4", "P4", "P-4"], name="target"),
                            columns=pd.Index(["I4", "I-4", "P4", "P-4", "other"], name="predicted"))
    pd.testing.assert_frame_equal(matrices["CNN"], expected)
    assert matrices["MLP"].to_numpy().sum() == 0 and matrices["MLP"].shape == (4, 5)
    assert matrices["RCNet"].to_numpy().sum() == 0
    axes = captured[0].axes
    cells = [int(t.get_text()) for t in axes[0].texts]
    assert cells == expected.to_numpy().ravel().tolist()
    assert axes[0].get_title() == "CNN: 4/8 right"
    assert "no test samples in this family" in axes[1].get_title()
    assert "no test samples in this family" in axes[2].get_title()
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["I4", "I-4", "P4", "P-4", "other"]


def test_tsne_of_a_tiny_xrdecoupler(tmp_path, captured):
    model_dir, split_path = tmp_path / "model", tmp_path / "train.zarr"
    _tiny_xrdecoupler(model_dir, split_path, n_rows=24)
    frame = figures.tsne_embedding(model_dir, split_path, n=16, seed=3)
    assert len(frame) == 16 and frame["row"].is_unique and frame["row"].is_monotonic_increasing
    assert frame.attrs["perplexity"] == 5.0  # adapted to small n: (16 - 1) / 3
    sg = {1: "triclinic", 14: "monoclinic", 62: "orthorhombic", 79: "tetragonal", 148: "trigonal",
          194: "hexagonal", 225: "cubic", 82: "tetragonal"}
    assert frame["crystal_system"].tolist() == [sg[g] for g in frame["space_group"]]
    assert np.isfinite(frame[["tsne_1", "tsne_2"]].to_numpy()).all()
    # n beyond the split's size: every row is drawn, one point each, coloured by crystal system
    out = figures.plot_tsne(model_dir, split_path, tmp_path / "tsne.png", n=100)
    _png_ok(out)
    axis = captured[0].axes[0]
    points = {c.get_label(): len(c.get_offsets()) for c in axis.collections}
    assert points == {"triclinic (3)": 3, "monoclinic (3)": 3, "orthorhombic (3)": 3, "tetragonal (6)": 6,
                      "trigonal (3)": 3, "hexagonal (3)": 3, "cubic (3)": 3}
    assert "24 train samples" in axis.get_title()


# ---------------------------------------------------------------- multi-phase figures


def test_val_f1_and_slot_diversity(tmp_path, captured):
    for run in ("multilabel_cnn", "phase_cluster_transformer"):
        _multi_history(tmp_path / run / "history.csv", slot=run == "phase_cluster_transformer")
    histories = {"CNN": tmp_path / "multilabel_cnn" / "history.csv",
                 "Slots": tmp_path / "phase_cluster_transformer" / "history.csv"}
    _png_ok(figures.plot_val_f1_curves(histories, tmp_path / "f1.png"))
    lines = captured[0].axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["CNN", "Slots"]
    assert 100 not in lines[0].get_xdata() and len(lines[0].get_xdata()) == 9  # NaN row skipped
    _png_ok(figures.plot_slot_diversity(histories["Slots"], tmp_path / "slots.png"))
    expected = 0.8 * np.exp(-np.arange(0, 1000, 100) / 300) + 0.1
    np.testing.assert_allclose(captured[1].axes[0].get_lines()[0].get_ydata(), expected)
    with pytest.raises(figures.FigureInputError, match="slot_diversity"):
        figures.plot_slot_diversity(histories["CNN"], tmp_path / "bad.png")


def test_stratified(tmp_path, captured):
    jsons = {}
    for i, (run, name) in enumerate((("multilabel_cnn", "CNN"), ("phase_cluster_transformer", "Slots"))):
        jsons[name] = {}
        for j, split in enumerate(("in_library", "test")):
            path = tmp_path / run / f"{split}.json"
            _multi_eval(path, slot=run == "phase_cluster_transformer", seed=10 * i + j)
            jsons[name][split] = path
    out = figures.plot_stratified(jsons, tmp_path / "strata.png")
    _png_ok(out)
    frame = figures.stratified_frame(jsons)
    assert len(frame) == 2 * 2 * 5
    slot_test = json.loads(jsons["Slots"]["test"].read_text())["best_gate"]["strata"]
    chosen = frame[(frame["model"] == "Slots") & (frame["split"] == "test")]
    np.testing.assert_allclose(chosen["micro_f1"], [s["micro_f1"] for s in slot_test])
    fixed = figures.stratified_frame(jsons, gate="fixed_gate")
    assert not np.allclose(fixed["micro_f1"], frame["micro_f1"])
    axes = np.array(captured[0].axes).reshape(3, 2)
    # row 1 = cover@K*, column 1 = test; lines: CNN solid, CNN dashed, Slots solid, Slots dashed
    slot_dashed = axes[1, 1].get_lines()[3]
    assert slot_dashed.get_linestyle() == "--"
    np.testing.assert_allclose(slot_dashed.get_xdata(), [2, 3])
    np.testing.assert_allclose(slot_dashed.get_ydata(),
                               [s["cover@K*"] for s in slot_test if s["min_fraction_le_10pct"]])
    assert axes[0, 1].get_title().startswith("out-of-library")


# ---------------------------------------------------------------- everything


def test_write_all_figures_draws_what_exists(tmp_path):
    results = tmp_path / "results"
    assert figures.write_all_figures(results, tmp_path / "out") == []
    _single_history(results / "models/mof/xrdecoupler/history.csv", mgda=True)
    _spc_json(results / "eval/mof/cnn/test.json",
              {"lattice_type": 0.9, "bravais_lattice": 0.8, "crystal_system": 0.85, "point_group": 0.3}, 10)
    _predictions(results / "eval/mof/xrdecoupler/test.predictions.parquet", [79, 82], [79, 79])
    _multi_history(results / "models/multiphase/phase_cluster_transformer/history.csv", slot=True)
    _multi_eval(results / "eval/multiphase/multilabel_cnn/test.json", slot=False, seed=0)
    written = figures.write_all_figures(results, tmp_path / "out")
    assert [p.stem for p in written] == ["mgda_losses", "spc_bars", "confusion_family", "val_f1_curves",
                                         "slot_diversity", "stratified"]  # no t-SNE: no model, no split
    for path in written:
        _png_ok(path)
        assert path.parent == tmp_path / "out"


def test_every_figure_has_its_caption_file():
    assert set(FIGURES) == {"mgda_losses", "spc_bars", "tsne", "confusion_family", "val_f1_curves",
                            "slot_diversity", "stratified"}
    for name, caption in FIGURES.items():
        rst = REPO / "workflow" / "report" / f"{name}.rst"
        assert rst.is_file(), rst
        assert " ".join(rst.read_text().split()) == " ".join(caption.split())
