"""Paper tables from evaluation JSONs: formatting, missing inputs, malformed files, all three formats."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from xrdbench.report.tables import (
    LATEX,
    MARKDOWN,
    PLAIN,
    TableInputError,
    ablation_table,
    format_cell,
    load_evaluation,
    multi_phase_table1,
    single_phase_table1,
    single_phase_table2,
    superclass_table,
    to_csv,
    to_latex,
    to_markdown,
    write_all_tables,
)

GRID = {"name": "paper", "two_theta_min_deg": 5.0, "two_theta_max_deg": 90.0, "n_bins": 8500}


def _meta(dataset: str, split: str, run: str, machine: str = "h100", **extra) -> dict:
    return {"dataset": dataset, "split": split, "run": run, "model": run, "preset": "paper_full",
            "train_dataset": "mof", "n_train": 8000, "grid": GRID, "machine": machine, "train_wall_s": 12.5,
            **extra}


def _write(root: Path, dataset: str, run: str, split: str, doc: dict) -> Path:
    path = root / dataset / run / f"{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def single(root: Path, dataset: str, run: str, split: str = "test", top: tuple = (0.5, 0.6, 0.7),
           f1: float = 0.3, recall: float = 0.25, n: int = 1000, heads: dict | None = None, **meta) -> Path:
    doc = {"n_samples": n, "top1": top[0], "top2": top[1], "top5": top[2], "macro_f1": f1, "macro_recall": recall,
           "n_classes_in_average": 40,
           "superclass_accuracy": {"from_space_group": {"point_group": min(top[0] + 0.1, 1.0),
                                                        "crystal_system": min(top[0] + 0.2, 1.0)},
                                   "from_head": heads or {}},
           "spc": {}, "meta": _meta(dataset, split, run, **meta)}
    return _write(root, dataset, run, split, doc)


def presence(values: tuple, threshold: float = 0.5) -> dict:
    keys = ("micro_f1", "cover@K*", "recall@K*", "cover@3K*", "recall@3K*")
    return {"threshold": threshold, "micro_precision": 0.5, "micro_recall": 0.5, "iou": 0.4,
            "cover@5K*": 0.9, "recall@5K*": 0.95, **dict(zip(keys, values))}


def multiphase(root: Path, run: str, split: str, values: tuple, slot_fixed: tuple | None = None) -> Path:
    meta = _meta("multiphase", split, run, train_dataset="oqmd", n_train=50000,
                 grid={"name": "oqmd", "two_theta_min_deg": 5.0, "two_theta_max_deg": 120.0, "n_bins": 2048})
    if slot_fixed is None:
        doc = {"n_samples": 250, **presence(values), "strata": [], "meta": meta}
    else:
        doc = {"n_samples": 250, "best_gate": presence(values, 0.35), "fixed_gate": presence(slot_fixed, 0.5),
               "meta": meta}
    return _write(root, "multiphase", run, split, doc)


def table_lines(markdown: str) -> list[str]:
    """The pipe-table lines, without the caption."""
    return [line for line in markdown.splitlines() if line.startswith("|")]


@pytest.fixture
def table1_dir(tmp_path: Path) -> Path:
    single(tmp_path, "mof", "cnn", top=(0.39, 0.564, 0.7758), f1=0.226, recall=0.215)
    single(tmp_path, "mof_balanced", "cnn", top=(0.229, 0.324, 0.47), n=300)
    single(tmp_path, "mof", "rcnet", top=(0.59, 0.737, 0.8837), f1=0.4129, recall=0.4038)
    single(tmp_path, "mof_balanced", "rcnet", top=(0.445, 0.555, 0.6912), n=300)
    single(tmp_path, "mof", "xrdecoupler", top=(0.80091, 0.90112, 0.9626), f1=0.5672, recall=0.5518,
           machine="a100", train_machine="a100")
    return tmp_path  # no MLP, NoPoolCNN, XRDMamba at all; no MOF-Balanced for XRDecoupler


# ---------------------------------------------------------------- the one cell formatter

def test_format_cell_marks_and_gains():
    assert format_cell(45.123, rank=1, gain=3.4) == "**45.12** (+3.40)"
    assert format_cell(45.123, rank=2, gain=-0.8) == "<u>45.12</u> (-0.80)"
    assert format_cell(45.123) == "45.12"
    assert format_cell(39.0, gain=0.0) == "39.00 (+0.00)"
    assert format_cell(39.0, gain=-0.001) == "39.00 (+0.00)"  # no "-0.00"
    assert format_cell(None, rank=1, gain=1.0) == "—"
    assert format_cell(45.123, rank=1, gain=3.4, style=LATEX) == "\\textbf{45.12} (+3.40)"
    assert format_cell(45.123, rank=2, style=LATEX) == "\\underline{45.12}"
    assert format_cell(None, style=LATEX) == "---"
    assert format_cell(45.123, rank=1, gain=3.4, style=PLAIN) == "45.12 (+3.40)"
    assert format_cell(0.8834, decimals=3, rank=1, style=MARKDOWN) == "**0.883**"


# ---------------------------------------------------------------- Table 1

def test_table1_markdown(table1_dir: Path):
    markdown = to_markdown(single_phase_table1(table1_dir))
    assert table_lines(markdown) == [
        "| Method | MOF Top-1 | MOF Top-2 | MOF Top-5 | MOF F1 | MOF Recall "
        "| MOF-Balanced Top-1 | MOF-Balanced Top-2 | MOF-Balanced Top-5 |",
        "|:---|---:|---:|---:|---:|---:|---:|---:|---:|",
        "| CNN | 39.00 (+0.00) | 56.40 (+0.00) | 77.58 (+0.00) | 22.60 (+0.00) | 21.50 (+0.00) "
        "| <u>22.90</u> (+0.00) | <u>32.40</u> (+0.00) | <u>47.00</u> (+0.00) |",
        "| RCNet | <u>59.00</u> (+20.00) | <u>73.70</u> (+17.30) | <u>88.37</u> (+10.79) | <u>41.29</u> (+18.69) "
        "| <u>40.38</u> (+18.88) | **44.50** (+21.60) | **55.50** (+23.10) | **69.12** (+22.12) |",
        "| XRDecoupler | **80.09** (+41.09) | **90.11** (+33.71) | **96.26** (+18.68) | **56.72** (+34.12) "
        "| **55.18** (+33.68) | — | — | — |",
    ]


def test_table1_caption_notes_sizes_grid_preset_machine(table1_dir: Path):
    markdown = to_markdown(single_phase_table1(table1_dir))
    caption = markdown.splitlines()[0]
    assert caption.startswith("Table: Space-group identification on MOF and MOF-Balanced (%). Evaluated: ")
    assert "MOF test n=1,000" in caption
    assert "MOF-Balanced test n=300" in caption
    assert "training set: mof (n_train=8,000)" in caption
    assert "grid: paper, 5–90° 2θ, 8,500 bins" in caption
    assert "preset: paper_full" in caption
    assert "machine: h100 (CNN, RCNet), a100 (XRDecoupler);" in caption
    assert "training machine: unknown (CNN, RCNet), a100 (XRDecoupler);" in caption
    assert "difference from CNN (percentage points)" in caption
    assert "macro averages" in caption


def test_table1_latex(table1_dir: Path):
    latex = to_latex(single_phase_table1(table1_dir))
    assert "& \\multicolumn{5}{c}{MOF} & \\multicolumn{3}{c}{MOF-Balanced} \\\\" in latex
    assert "\\cmidrule(lr){2-6} \\cmidrule(lr){7-9}" in latex
    assert "Method & Top-1 & Top-2 & Top-5 & F1 & Recall & Top-1 & Top-2 & Top-5 \\\\" in latex
    assert ("XRDecoupler & \\textbf{80.09} (+41.09) & \\textbf{90.11} (+33.71) & \\textbf{96.26} (+18.68) & "
            "\\textbf{56.72} (+34.12) & \\textbf{55.18} (+33.68) & --- & --- & --- \\\\") in latex
    assert "RCNet & \\underline{59.00} (+20.00)" in latex
    assert "preset: paper\\_full" in latex  # caption escaped
    assert "5--90$^\\circ$ 2$\\theta$" in latex
    assert "\\label{tab:single_phase_table1}" in latex
    assert "<u>" not in latex and "**" not in latex and "—" not in latex


def test_table1_csv_plain_numbers_and_gain_columns(table1_dir: Path):
    rows = list(csv.reader(io.StringIO(to_csv(single_phase_table1(table1_dir)))))
    assert rows[0][:5] == ["Method", "MOF Top-1", "MOF Top-1 gain vs CNN", "MOF Top-2", "MOF Top-2 gain vs CNN"]
    assert len(rows[0]) == 1 + 2 * 8
    assert rows[1][:3] == ["CNN", "39.00", "+0.00"]
    assert rows[3][:3] == ["XRDecoupler", "80.09", "+41.09"]
    assert rows[3][-2:] == ["", ""]  # missing MOF-Balanced: empty fields
    assert not any(line.startswith("#") for line in to_csv(single_phase_table1(table1_dir)).splitlines())


def test_ties_share_marks_and_next_distinct_value_is_second(tmp_path: Path):
    single(tmp_path, "mof", "cnn", top=(0.40, 0.5, 0.6))
    single(tmp_path, "mof", "rcnet", top=(0.45004, 0.5, 0.6))
    single(tmp_path, "mof", "xrdmamba", top=(0.44996, 0.5, 0.6))  # prints 45.00 like RCNet
    single(tmp_path, "mof", "xrdecoupler", top=(0.30, 0.5, 0.6))
    lines = table_lines(to_markdown(single_phase_table1(tmp_path)))
    assert lines[2].startswith("| CNN | <u>40.00</u> (+0.00) | **50.00** (+0.00) |")
    assert lines[3].startswith("| RCNet | **45.00** (+5.00) |")
    assert lines[4].startswith("| XRDMamba | **45.00** (+5.00) |")
    assert lines[5].startswith("| XRDecoupler | 30.00 (-10.00) |")


def test_no_cnn_no_gains(tmp_path: Path):
    single(tmp_path, "mof", "rcnet", top=(0.59, 0.7, 0.8))
    single(tmp_path, "mof", "xrdmamba", top=(0.72, 0.8, 0.9))
    table = single_phase_table1(tmp_path)
    lines = table_lines(to_markdown(table))
    assert lines[2] == ("| RCNet | <u>59.00</u> | <u>70.00</u> | <u>80.00</u> | **30.00** | **25.00** "
                        "| — | — | — |")
    assert "(" not in lines[3]
    assert "gain" not in to_csv(table).splitlines()[0]
    assert "difference from" not in table.caption


# ---------------------------------------------------------------- Table 2, ablation, superclasses

def test_table2_bold_only_with_gains(tmp_path: Path):
    single(tmp_path, "inorganic", "mlp", top=(0.155, 0.214, 0.3), f1=0.085, n=800)
    single(tmp_path, "inorganic", "cnn", top=(0.296, 0.446, 0.5), f1=0.077, n=800)
    single(tmp_path, "inorganic", "xrdecoupler", top=(0.6022, 0.7045, 0.8), f1=0.2909, n=800)
    table = single_phase_table2(tmp_path)
    assert table_lines(to_markdown(table)) == [
        "| Method | InorganicData Top-1 | InorganicData Top-2 | InorganicData F1 |",
        "|:---|---:|---:|---:|",
        "| MLP | 15.50 (-14.10) | 21.40 (-23.20) | 8.50 (+0.80) |",
        "| CNN | 29.60 (+0.00) | 44.60 (+0.00) | 7.70 (+0.00) |",
        "| XRDecoupler | **60.22** (+30.62) | **70.45** (+25.85) | **29.09** (+21.39) |",
    ]
    assert "InorganicData test n=800" in table.caption
    assert single_phase_table1(tmp_path) is None  # no MOF inputs


def test_ablation_rows_and_differences_from_full_model(tmp_path: Path):
    single(tmp_path, "mof", "xrdecoupler", top=(0.80, 0.90, 0.96), f1=0.56)
    single(tmp_path, "mof", "xrdecoupler_local_only", top=(0.75, 0.86, 0.97), f1=0.50)
    single(tmp_path, "mof", "xrdecoupler_no_superclasses", top=(0.70, 0.85, 0.93), f1=0.48)
    single(tmp_path, "mof", "cnn")  # not an ablation row
    assert table_lines(to_markdown(ablation_table(tmp_path)))[2:] == [
        "| XRDecoupler (full) | **80.00** (+0.00) | **90.00** (+0.00) | <u>96.00</u> (+0.00) | **56.00** (+0.00) |",
        "| w/o superclass tasks | 70.00 (-10.00) | 85.00 (-5.00) | 93.00 (-3.00) | 48.00 (-8.00) |",
        "| local module only | <u>75.00</u> (-5.00) | <u>86.00</u> (-4.00) | **97.00** (+1.00) "
        "| <u>50.00</u> (-6.00) |",
    ]


def test_superclass_table_from_space_group_and_heads(tmp_path: Path):
    single(tmp_path, "mof", "cnn", top=(0.40, 0.5, 0.6))
    single(tmp_path, "mof", "xrdecoupler", top=(0.70, 0.8, 0.9),
           heads={"crystal_system": 0.95, "bravais_lattice": 0.9, "point_group": 0.85})
    single(tmp_path, "mof", "xrdecoupler_no_superclasses", top=(0.60, 0.7, 0.8))
    table = superclass_table(tmp_path)
    assert table.name == "superclass_accuracy"
    assert table_lines(to_markdown(table)) == [
        "| Method | from space group Crystal system | from space group Point group | from head Crystal system "
        "| from head Bravais lattice | from head Point group |",
        "|:---|---:|---:|---:|---:|---:|",
        "| CNN | 60.00 | 50.00 | — | — | — |",
        "| XRDecoupler | **90.00** | **80.00** | **95.00** | **90.00** | **85.00** |",
        "| w/o superclass tasks | <u>80.00</u> | <u>70.00</u> | — | — | — |",
    ]


# ---------------------------------------------------------------- multi-phase Table 1

def test_multi_phase_table(tmp_path: Path):
    multiphase(tmp_path, "multilabel_cnn", "in_library", (0.778, 0.561, 0.806, 0.790, 0.923))
    multiphase(tmp_path, "multilabel_cnn", "test", (0.665, 0.424, 0.690, 0.680, 0.859))
    multiphase(tmp_path, "multilabel_transformer", "in_library", (0.883, 0.737, 0.900, 0.893, 0.965))
    multiphase(tmp_path, "phase_cluster_transformer", "in_library", (0.858, 0.689, 0.877, 0.822, 0.940),
               slot_fixed=(0.850, 0.680, 0.870, 0.820, 0.930))
    multiphase(tmp_path, "phase_cluster_transformer", "test", (0.688, 0.456, 0.712, 0.695, 0.867),
               slot_fixed=(0.680, 0.450, 0.700, 0.690, 0.860))
    table = multi_phase_table1(tmp_path)
    lines = table_lines(to_markdown(table))
    assert lines[0] == ("| Method | In-library micro-F1 | In-library cover@K* | In-library recall@K* "
                        "| In-library cover@3K* | In-library recall@3K* | Out-of-library micro-F1 "
                        "| Out-of-library cover@K* | Out-of-library recall@K* | Out-of-library cover@3K* "
                        "| Out-of-library recall@3K* |")
    assert lines[2:] == [
        "| Multi-label (CNN) | 0.778 | 0.561 | 0.806 | 0.790 | 0.923 | 0.665 | 0.424 | 0.690 | 0.680 | 0.859 |",
        "| Multi-label (Transformer) | **0.883** | **0.737** | **0.900** | **0.893** | **0.965** "
        "| — | — | — | — | — |",
        "| Phase-cluster (Transformer), best gate | 0.858 | 0.689 | 0.877 | 0.822 | 0.940 "
        "| **0.688** | **0.456** | **0.712** | **0.695** | **0.867** |",
        "| Phase-cluster (Transformer), gate 0.5 | 0.850 | 0.680 | 0.870 | 0.820 | 0.930 "
        "| 0.680 | 0.450 | 0.700 | 0.690 | 0.860 |",
    ]
    assert "in-library n=250, out-of-library n=250" in table.caption
    assert "grid: oqmd, 5–120° 2θ, 2,048 bins" in table.caption
    assert "training machine" not in table.caption  # only when some meta has train_machine
    assert "training set: oqmd (n_train=50,000)" in table.caption
    assert ("decision thresholds: Multi-label (CNN) = 0.5, Multi-label (Transformer) = 0.5, "
            "Phase-cluster (Transformer), best gate = 0.35, Phase-cluster (Transformer), gate 0.5 = 0.5;") \
        in table.caption
    assert "\\multicolumn{5}{c}{Out-of-library}" in to_latex(table)


# ---------------------------------------------------------------- malformed input

def test_malformed_json_names_the_file(tmp_path: Path):
    path = single(tmp_path, "mof", "cnn")
    path.write_text("{not json")
    with pytest.raises(TableInputError, match=str(path)):
        single_phase_table1(tmp_path)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("top2"), "missing key top2"),
    (lambda d: d.update(top1=45.0), "top1 must be a fraction"),
    (lambda d: d.update(macro_f1="0.3"), "macro_f1 must be a number"),
    (lambda d: d.pop("meta"), "meta"),
    (lambda d: d.update(n_samples=-1), "n_samples"),
    (lambda d: d["superclass_accuracy"].update(from_head=[1]), "from_head must be a JSON object"),
])
def test_invalid_content_names_the_file(tmp_path: Path, change, message):
    path = single(tmp_path, "mof", "rcnet")
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(TableInputError, match=message) as caught:
        load_evaluation(path)
    assert str(path) in str(caught.value)


def test_slot_json_needs_both_gates(tmp_path: Path):
    path = multiphase(tmp_path, "phase_cluster_transformer", "test", (0.5,) * 5, slot_fixed=(0.5,) * 5)
    doc = json.loads(path.read_text())
    del doc["fixed_gate"]["recall@3K*"]
    path.write_text(json.dumps(doc))
    with pytest.raises(TableInputError, match="fixed_gate.recall@3K"):
        multi_phase_table1(tmp_path)


def test_null_metric_prints_missing(tmp_path: Path):
    path = single(tmp_path, "mof", "cnn")
    doc = json.loads(path.read_text())
    doc["macro_recall"] = None
    path.write_text(json.dumps(doc))
    assert "| **30.00** (+0.00) | — |" in to_markdown(single_phase_table1(tmp_path))


# ---------------------------------------------------------------- writing

def test_write_all_tables_writes_what_exists(table1_dir: Path, tmp_path: Path):
    multiphase(table1_dir, "multilabel_cnn", "test", (0.665, 0.424, 0.690, 0.680, 0.859))
    out = tmp_path / "reports" / "tables"
    paths = write_all_tables(table1_dir, out)
    names = sorted(p.name for p in paths)
    expected = [f"{table}{suffix}" for table in ("ablation", "multi_phase_table1", "single_phase_table1",
                                                                  "superclass_accuracy")
                for suffix in (".caption.txt", ".csv", ".md", ".tex")]
    assert names == sorted(expected)
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)  # no temporaries left behind
    assert (out / "single_phase_table1.md").read_text(encoding="utf-8") == \
        to_markdown(single_phase_table1(table1_dir))
    assert (out / "single_phase_table1.caption.txt").read_text(encoding="utf-8") == \
        single_phase_table1(table1_dir).caption + "\n"


def test_write_all_tables_empty_dir(tmp_path: Path):
    assert write_all_tables(tmp_path / "eval", tmp_path / "out") == []


def test_write_all_tables_malformed_writes_nothing(table1_dir: Path, tmp_path: Path):
    (table1_dir / "inorganic" / "cnn").mkdir(parents=True)
    bad = table1_dir / "inorganic" / "cnn" / "test.json"
    bad.write_text("[]")
    with pytest.raises(TableInputError, match=str(bad)):
        write_all_tables(table1_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()
