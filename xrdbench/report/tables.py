"""The papers' tables, built only from the evaluation JSONs, as Markdown, CSV and LaTeX.

Inputs (nothing else is read)::

    {eval_dir}/{dataset}/{run}/{split}.json      single-phase: mof (val, test), mof_balanced, inorganic
    {eval_dir}/multiphase/{run}/{split}.json     multi-phase: in_library, test (out-of-library)

Tables (see :data:`TABLE_BUILDERS`): ``single_phase_table1`` (paper Table 1),
``single_phase_table2`` (paper Table 2, InorganicData), ``ablation`` (MOF
test), ``superclass_accuracy`` (MOF test) and ``multi_phase_table1``.

Conventions
-----------
* Single-phase metrics are stored as fractions and printed as percentages with
  2 decimals; multi-phase metrics are printed as fractions with 3 decimals, as
  each paper does.
* Gains are printed in parentheses after the value, relative to a reference row
  (CNN in Tables 1 and 2; the full XRDecoupler in the ablation), e.g.
  ``45.12 (+3.40)``. A gain is the difference of the two *printed* values, so
  the printed arithmetic always adds up; the reference row shows ``(+0.00)``.
  No reference row, no gains; a reference row without the cell, no gain in
  that column.
* Marks: the best value of each column is bold, the second best underlined
  (Markdown ``**x**`` / ``<u>x</u>``, LaTeX ``\\textbf{x}`` / ``\\underline{x}``).
  Tables whose paper marks only the best (Table 2, multi-phase Table 1) mark
  only the best. Ties: values are compared as printed; every value equal to
  the best printed value is bold, and every value equal to the next distinct
  printed value is underlined (dense ranking), so a tie for best still leaves
  an underlined second best. Higher is better in every column.
* Missing input: a table is built from the files that exist. A row appears when
  at least one of its files exists; a cell whose file or key is missing prints
  ``—`` (``---`` in LaTeX, an empty field in CSV). A table with no input file
  is not built. A malformed JSON raises :class:`TableInputError` naming the file.
* CSV: one header row and plain numbers only, rounded to the printed precision
  and in the printed units, with no marks; when the table has gains, each value
  column is followed by a ``"<column> gain vs <reference>"`` column. The
  caption (sizes, grid, preset, machine) goes into the sidecar
  ``{name}.caption.txt`` because CSV has no comment syntax.
* The caption of every table reports, from the JSONs' ``meta``, the number of
  samples of each evaluated split, the training set and its size, the grid, the
  preset and the machine; a value that differs between runs is listed per run.
* LaTeX output uses ``booktabs`` (``\\toprule``, ``\\midrule``, ``\\cmidrule``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from xrdbench.atomic import write_bytes_atomic
from xrdbench.errors import XrdbenchError
from xrdbench.symmetry.tables import SUPERCLASSES

__all__ = [
    "ABLATIONS",
    "LATEX",
    "MARKDOWN",
    "MODELS",
    "PLAIN",
    "TABLE_BUILDERS",
    "Column",
    "Style",
    "Table",
    "TableInputError",
    "ablation_table",
    "build_tables",
    "format_cell",
    "load_evaluation",
    "multi_phase_table1",
    "single_phase_table1",
    "single_phase_table2",
    "superclass_table",
    "to_csv",
    "to_latex",
    "to_markdown",
    "write_all_tables",
    "write_table",
]


class TableInputError(XrdbenchError, ValueError):
    """An evaluation JSON is unreadable or lacks what a table needs; the message names the file."""


# ---------------------------------------------------------------- names, in the papers' order

#: (run, display name) of the single-phase models, in the order of the paper's Table 1.
MODELS = (("mlp", "MLP"), ("cnn", "CNN"), ("nopool_cnn", "NoPoolCNN"), ("rcnet", "RCNet"),
          ("xrdmamba", "XRDMamba"), ("xrdecoupler", "XRDecoupler"))
#: (run, display name) of the ablation table; the first row is the reference.
ABLATIONS = (("xrdecoupler", "XRDecoupler (full)"),
             ("xrdecoupler_no_superclasses", "w/o superclass tasks"),
             ("xrdecoupler_fixed_weights", "fixed task weights (no MGDA)"),
             ("xrdecoupler_local_only", "local module only"),
             ("xrdecoupler_global_only", "global module only"))
#: (run, display name) of the multi-phase models.
MULTIPHASE_MODELS = (("multilabel_cnn", "Multi-label (CNN)"), ("multilabel_transformer", "Multi-label (Transformer)"),
                     ("phase_cluster_transformer", "Phase-cluster (Transformer)"))
RUN_NAMES = dict(MODELS + ABLATIONS[1:] + MULTIPHASE_MODELS)

DATASET_NAMES = {"mof": "MOF", "mof_balanced": "MOF-Balanced", "inorganic": "InorganicData"}
MULTIPHASE_SPLITS = {"in_library": "in-library", "test": "out-of-library"}

SINGLE_PHASE_KEYS = ("top1", "top2", "top5", "macro_f1", "macro_recall")
PRESENCE_KEYS = ("micro_f1", "cover@K*", "recall@K*", "cover@3K*", "recall@3K*")
MULTIPHASE_LABELS = ("micro-F1", "cover@K*", "recall@K*", "cover@3K*", "recall@3K*")
KINDS = ("single_phase", "presence", "slot")

MACRO_NOTE = ("F1 and Recall are macro averages over the classes present in the split's targets or "
              "predictions (classes absent from both are excluded)")


# ---------------------------------------------------------------- reading and checking one file

def _fail(path: Path, message: str) -> TableInputError:
    return TableInputError(f"{path}: {message}")


def _check_fraction(path: Path, value, where: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(path, f"{where} must be a number in [0, 1], got {value!r}")
    if not math.isnan(value) and not 0.0 <= value <= 1.0:
        raise _fail(path, f"{where} must be a fraction in [0, 1], got {value!r}")


def _check_metrics(path: Path, block, keys: Iterable[str], where: str = "") -> None:
    if not isinstance(block, dict):
        raise _fail(path, f"{where or 'document'} must be a JSON object")
    prefix = f"{where}." if where else ""
    for key in keys:
        if key not in block:
            raise _fail(path, f"missing key {prefix}{key}")
        _check_fraction(path, block[key], f"{prefix}{key}")


def _check_superclasses(path: Path, data: dict) -> None:
    block = data.get("superclass_accuracy", {})
    if not isinstance(block, dict):
        raise _fail(path, "superclass_accuracy must be a JSON object")
    for source in ("from_space_group", "from_head"):
        values = block.get(source, {})
        names = list(values) if isinstance(values, dict) else []
        _check_metrics(path, values, names, f"superclass_accuracy.{source}")


def _infer_kind(data: dict) -> str:
    if "best_gate" in data or "fixed_gate" in data:
        return "slot"
    return "presence" if "micro_f1" in data else "single_phase"


def load_evaluation(path: str | Path, kind: str | None = None) -> dict:
    """Read one evaluation JSON and check the keys the tables print.

    ``kind`` is ``"single_phase"``, ``"presence"`` or ``"slot"``; ``None`` infers
    it from the content. Metric values must be fractions in [0, 1] (``null`` or
    NaN print as missing). Raises :class:`TableInputError` naming ``path``.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _fail(path, f"cannot read evaluation JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise _fail(path, "an evaluation JSON must be an object")
    kind = kind or _infer_kind(data)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(data.get("meta"), dict):
        raise _fail(path, "missing object 'meta'")
    n = data.get("n_samples")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise _fail(path, f"n_samples must be a non-negative integer, got {n!r}")
    if kind == "single_phase":
        _check_metrics(path, data, SINGLE_PHASE_KEYS)
        _check_superclasses(path, data)
    elif kind == "presence":
        _check_metrics(path, data, PRESENCE_KEYS)
    else:
        for gate in ("best_gate", "fixed_gate"):
            _check_metrics(path, data.get(gate), PRESENCE_KEYS, gate)
    return data


# ---------------------------------------------------------------- the table model and the one cell formatter

@dataclass(frozen=True)
class Column:
    label: str
    group: str = ""

    @property
    def title(self) -> str:
        return f"{self.group} {self.label}" if self.group else self.label


@dataclass(frozen=True)
class Table:
    """A finished table: values already in printed units (``None`` = missing)."""

    name: str
    caption: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[str, tuple[float | None, ...]], ...]
    decimals: int = 2
    reference: str | None = None
    underline_second: bool = True
    row_header: str = "Method"


@dataclass(frozen=True)
class Style:
    """How one output format marks the best and second-best value, and prints a missing one."""

    best: str
    second: str
    missing: str


MARKDOWN = Style("**{}**", "<u>{}</u>", "—")
LATEX = Style("\\textbf{{{}}}", "\\underline{{{}}}", "---")
PLAIN = Style("{}", "{}", "")


def _shown(value: float, decimals: int) -> float:
    """The value as printed, so comparisons and gains agree with the text."""
    return float(f"{value:.{decimals}f}")


def _signed(value: float, decimals: int) -> str:
    text = f"{value:+.{decimals}f}"
    return f"+{0:.{decimals}f}" if float(text) == 0 else text


def format_cell(value: float | None, *, decimals: int = 2, rank: int | None = None, gain: float | None = None,
                style: Style = MARKDOWN) -> str:
    """``45.12``, ``**45.12** (+3.40)``, ``<u>45.12</u> (-0.80)`` or ``—``: every table's cells come from here.

    ``rank`` 1 marks the best, 2 the second best; ``gain`` (already the
    difference of printed values) is appended in parentheses with its sign.
    """
    if value is None:
        return style.missing
    text = f"{value:.{decimals}f}"
    if rank == 1:
        text = style.best.format(text)
    elif rank == 2:
        text = style.second.format(text)
    return text if gain is None else f"{text} ({_signed(gain, decimals)})"


def _ranks(values: Sequence[float | None], decimals: int, second: bool) -> list[int | None]:
    shown = [None if v is None else _shown(v, decimals) for v in values]
    distinct = sorted({s for s in shown if s is not None}, reverse=True)
    marks = {value: rank for rank, value in enumerate(distinct[:2 if second else 1], start=1)}
    return [None if s is None else marks.get(s) for s in shown]


def _gains(values: Sequence[float | None], reference: float | None, decimals: int) -> list[float | None]:
    if reference is None:
        return [None] * len(values)
    base = _shown(reference, decimals)
    return [None if v is None else _shown(v, decimals) - base for v in values]


def _annotated(table: Table) -> list[list[tuple[float | None, int | None, float | None]]]:
    """Per row, per column: (value, rank, gain)."""
    labels = [label for label, _ in table.rows]
    reference = labels.index(table.reference) if table.reference in labels else None
    columns = []
    for j in range(len(table.columns)):
        values = [row[j] for _, row in table.rows]
        ranks = _ranks(values, table.decimals, table.underline_second)
        gains = _gains(values, None if reference is None else values[reference], table.decimals)
        columns.append(list(zip(values, ranks, gains)))
    return [list(cells) for cells in zip(*columns)] if columns else [[] for _ in table.rows]


def _rendered(table: Table, style: Style) -> list[tuple[str, list[str]]]:
    return [(label, [format_cell(v, decimals=table.decimals, rank=r, gain=g, style=style) for v, r, g in cells])
            for (label, _), cells in zip(table.rows, _annotated(table))]


# ---------------------------------------------------------------- renderers

def _md(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(table: Table) -> str:
    """A pandoc-style caption line (``Table: ...``), a blank line, then a pipe table."""

    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(_md(c) for c in cells) + " |"

    lines = [f"Table: {_md(table.caption)}", "", line([table.row_header, *(c.title for c in table.columns)]),
             "|" + "|".join([":---"] + ["---:"] * len(table.columns)) + "|"]
    lines += [line([label, *cells]) for label, cells in _rendered(table, MARKDOWN)]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """Plain numbers in printed units; gain columns after each value column when the table has gains."""
    has_gains = table.reference in [label for label, _ in table.rows]
    header = [table.row_header]
    for column in table.columns:
        header += [column.title] + ([f"{column.title} gain vs {table.reference}"] if has_gains else [])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for (label, _), cells in zip(table.rows, _annotated(table)):
        row = [label]
        for value, _, gain in cells:
            row.append(format_cell(value, decimals=table.decimals, style=PLAIN))
            if has_gains:
                row.append("" if gain is None else _signed(gain, table.decimals))
        writer.writerow(row)
    return buffer.getvalue()


_TEX = {"\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#", "_": "\\_", "{": "\\{",
        "}": "\\}", "~": "\\textasciitilde{}", "^": "\\textasciicircum{}", "—": "---", "–": "--",
        "°": "$^\\circ$", "θ": "$\\theta$"}


def _tex(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def _group_spans(columns: Sequence[Column]) -> list[tuple[str, int, int]]:
    """(group, first, last) over runs of equal group, 1-based among the value columns."""
    spans: list[tuple[str, int, int]] = []
    for j, column in enumerate(columns, start=1):
        if spans and spans[-1][0] == column.group:
            spans[-1] = (column.group, spans[-1][1], j)
        else:
            spans.append((column.group, j, j))
    return spans


def to_latex(table: Table) -> str:
    """A ``table`` float with caption and label; column groups become ``\\multicolumn`` headers."""
    lines = ["\\begin{table}[t]", "\\centering", f"\\caption{{{_tex(table.caption)}}}",
             f"\\label{{tab:{table.name}}}", f"\\begin{{tabular}}{{l{'r' * len(table.columns)}}}", "\\toprule"]
    spans = _group_spans(table.columns)
    if any(group for group, _, _ in spans):
        cells = [""]
        for group, first, last in spans:
            width = last - first + 1
            cells += [f"\\multicolumn{{{width}}}{{c}}{{{_tex(group)}}}"] if group else [""] * width
        lines.append(" & ".join(cells) + " \\\\")
        lines.append(" ".join(f"\\cmidrule(lr){{{first + 1}-{last + 1}}}" for group, first, last in spans if group))
    lines.append(" & ".join(_tex(t) for t in [table.row_header, *(c.label for c in table.columns)]) + " \\\\")
    lines.append("\\midrule")
    lines += [" & ".join([_tex(label), *cells]) + " \\\\" for label, cells in _rendered(table, LATEX)]
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- building a table from files

@dataclass(frozen=True)
class _Row:
    run: str
    label: str
    prefix: tuple[str, ...] = ()
    kind: str = "single_phase"


@dataclass(frozen=True)
class _Col:
    dataset: str
    split: str
    metric: tuple[str, ...]
    label: str
    group: str = ""


def _dig(data: Mapping | None, path: Sequence[str]):
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    if isinstance(data, bool) or not isinstance(data, (int, float)) or math.isnan(data):
        return None
    return float(data)


def _load(eval_dir: Path, rows: Sequence[_Row], inputs: Iterable[tuple[str, str]]) -> dict:
    """{(dataset, split, run): document} for every input file that exists."""
    loaded = {}
    for row in rows:
        for dataset, split in inputs:
            path = eval_dir / dataset / row.run / f"{split}.json"
            if (dataset, split, row.run) not in loaded and path.is_file():
                loaded[(dataset, split, row.run)] = load_evaluation(path, row.kind)
    return loaded


def _inputs(columns: Sequence[_Col]) -> list[tuple[str, str]]:
    return list(dict.fromkeys((c.dataset, c.split) for c in columns))


def _input_name(dataset: str, split: str) -> str:
    if dataset == "multiphase":
        return MULTIPHASE_SPLITS.get(split, split)
    return f"{DATASET_NAMES.get(dataset, dataset)} {split}"


def _summary(values: Mapping[str, object]) -> str:
    """``x`` when every run agrees, else ``x (MLP, CNN), y (RCNet)``."""
    groups: dict[str, list[str]] = {}
    for who, value in values.items():
        groups.setdefault(str(value), []).append(who)
    if len(groups) == 1:
        return next(iter(groups))
    return ", ".join(f"{value} ({', '.join(who)})" for value, who in groups.items())


def _grid_text(grid) -> str:
    if not isinstance(grid, Mapping):
        return "unknown"
    low, high, bins = grid.get("two_theta_min_deg"), grid.get("two_theta_max_deg"), grid.get("n_bins")
    span = f"{low:g}–{high:g}° 2θ" if isinstance(low, (int, float)) and isinstance(high, (int, float)) else "? 2θ"
    bins = f"{bins:,} bins" if isinstance(bins, int) else "? bins"
    return f"{grid.get('name', 'unnamed')}, {span}, {bins}"


def _train_text(meta: Mapping) -> str:
    n = meta.get("n_train")
    return f"{meta.get('train_dataset', 'unknown')} (n_train={n:,})" if isinstance(n, int) else \
        f"{meta.get('train_dataset', 'unknown')} (n_train unknown)"


def _meta_notes(loaded: Mapping, inputs: Sequence[tuple[str, str]]) -> list[str]:
    """Sizes of the evaluated splits, training set, grid, preset and machine(s), from the files' meta."""
    used = [(key, doc) for key, doc in loaded.items() if key[:2] in inputs]
    names = {key: RUN_NAMES.get(key[2], key[2]) for key, _ in used}
    sizes = []
    for dataset, split in inputs:
        counts = {names[key]: f"{doc['n_samples']:,}" for key, doc in used if key[:2] == (dataset, split)}
        if counts:
            sizes.append(f"{_input_name(dataset, split)} n={_summary(counts)}")
    per_run = {names[key]: doc["meta"] for key, doc in used}
    field_text: dict[str, Callable[[Mapping], str]] = {
        "training set": _train_text,
        "grid": lambda meta: _grid_text(meta.get("grid")),
        "preset": lambda meta: str(meta.get("preset", "unknown")),
        "machine": lambda meta: str(meta.get("machine", "unknown")),
    }
    if any("train_machine" in meta for meta in per_run.values()):
        field_text["training machine"] = lambda meta: str(meta.get("train_machine", "unknown"))
    notes = ["Evaluated: " + ", ".join(sizes)]
    notes += [f"{label}: {_summary({who: text(meta) for who, meta in per_run.items()})}"
              for label, text in field_text.items()]
    return notes


def _caption(title: str, notes: Sequence[str]) -> str:
    return f"{title}. " + "; ".join(notes) + "."


def _marks_note(second: bool) -> str:
    if second:
        return ("bold: best, underline: second best per column (compared as printed; equal values share the mark, "
                "and the next distinct value is second)")
    return "bold: best per column (compared as printed; equal values share the mark)"


def _cell(loaded: Mapping, row: _Row, column: _Col, scale: float) -> float | None:
    value = _dig(loaded.get((column.dataset, column.split, row.run)), row.prefix + column.metric)
    return None if value is None else value * scale


def _assemble(name: str, title: str, eval_dir: str | Path, rows: Sequence[_Row], columns: Sequence[_Col], *,
              scale: float = 100.0, decimals: int = 2, reference: str | None = None, second: bool = True,
              extra_notes: Sequence[str] = (), loaded: Mapping | None = None) -> Table | None:
    """The shared builder: one row per run with a file, one cell per (file, metric path)."""
    inputs = _inputs(columns)
    loaded = _load(Path(eval_dir), rows, inputs) if loaded is None else loaded
    kept = [row for row in rows if any((d, s, row.run) in loaded for d, s in inputs)]
    if not kept:
        return None
    body = tuple((row.label, tuple(_cell(loaded, row, c, scale) for c in columns)) for row in kept)
    labels = [row.label for row in kept]
    reference = reference if reference in labels else None
    notes = _meta_notes(loaded, inputs) + list(extra_notes)
    if reference is not None:
        unit = "percentage points" if scale == 100.0 else "absolute"
        notes.append(f"in parentheses: difference from {reference} ({unit})")
    notes.append(_marks_note(second))
    return Table(name=name, caption=_caption(title, notes), columns=tuple(Column(c.label, c.group) for c in columns),
                 rows=body, decimals=decimals, reference=reference, underline_second=second)


# ---------------------------------------------------------------- the tables

def _rows(runs: Sequence[tuple[str, str]]) -> list[_Row]:
    return [_Row(run, label) for run, label in runs]


def single_phase_table1(eval_dir: str | Path) -> Table | None:
    """Paper Table 1: MOF test (Top-1/2/5, F1, Recall) and MOF-Balanced test (Top-1/2/5), gains vs CNN."""
    mof = [_Col("mof", "test", (key,), label, "MOF") for key, label in
           zip(SINGLE_PHASE_KEYS, ("Top-1", "Top-2", "Top-5", "F1", "Recall"))]
    balanced = [_Col("mof_balanced", "test", (key,), label, "MOF-Balanced") for key, label in
                zip(SINGLE_PHASE_KEYS, ("Top-1", "Top-2", "Top-5"))]
    return _assemble("single_phase_table1", "Space-group identification on MOF and MOF-Balanced (%)", eval_dir,
                     _rows(MODELS), mof + balanced, reference="CNN", extra_notes=[MACRO_NOTE])


def single_phase_table2(eval_dir: str | Path) -> Table | None:
    """Paper Table 2: generalization to inorganic crystals (Top-1, Top-2, F1), gains vs CNN, best in bold."""
    columns = [_Col("inorganic", "test", (key,), label, "InorganicData") for key, label in
               (("top1", "Top-1"), ("top2", "Top-2"), ("macro_f1", "F1"))]
    return _assemble("single_phase_table2", "Generalization to inorganic crystals (InorganicData, %)", eval_dir,
                     _rows(MODELS), columns, reference="CNN", second=False, extra_notes=[MACRO_NOTE])


def ablation_table(eval_dir: str | Path) -> Table | None:
    """XRDecoupler and its ablations on MOF test (Top-1/2/5, F1), differences from the full model."""
    columns = [_Col("mof", "test", (key,), label, "MOF") for key, label in
               zip(SINGLE_PHASE_KEYS, ("Top-1", "Top-2", "Top-5", "F1"))]
    return _assemble("ablation", "Ablation of XRDecoupler on MOF test (%)", eval_dir, _rows(ABLATIONS), columns,
                     reference=ABLATIONS[0][1], extra_notes=[MACRO_NOTE])


def _superclass_order(names: Iterable[str]) -> list[str]:
    known = [name for name in SUPERCLASSES if name in names]
    return known + sorted(set(names) - set(known))


def superclass_table(eval_dir: str | Path, dataset: str = "mof", split: str = "test") -> Table | None:
    """Per-superclass accuracy of every model and ablation: derived from the predicted space group, and
    from the superclass heads where a run has them (columns shown only when some run has them)."""
    rows = _rows(MODELS + ABLATIONS[1:])
    loaded = _load(Path(eval_dir), rows, [(dataset, split)])
    columns = []
    for source, group in (("from_space_group", "from space group"), ("from_head", "from head")):
        names = {name for doc in loaded.values() for name in doc.get("superclass_accuracy", {}).get(source, {})}
        columns += [_Col(dataset, split, ("superclass_accuracy", source, name),
                         name.replace("_", " ").capitalize(), group) for name in _superclass_order(names)]
    if not loaded or not columns:
        return None
    name = "superclass_accuracy" if (dataset, split) == ("mof", "test") else f"superclass_accuracy_{dataset}_{split}"
    return _assemble(name, f"Superclass accuracy on {_input_name(dataset, split)} (%)", eval_dir, rows, columns,
                     loaded=loaded)


def multi_phase_table1(eval_dir: str | Path) -> Table | None:
    """Multi-phase Table 1: in-library and out-of-library micro-F1 and top-K* set metrics; best in bold."""
    rows = [_Row(run, label, kind="presence") for run, label in MULTIPHASE_MODELS[:2]]
    slot, name = MULTIPHASE_MODELS[2]
    rows += [_Row(slot, f"{name}, best gate", ("best_gate",), "slot"),
             _Row(slot, f"{name}, gate 0.5", ("fixed_gate",), "slot")]
    columns = [_Col("multiphase", split, (key,), label, group.capitalize())
               for split, group in MULTIPHASE_SPLITS.items() for key, label in zip(PRESENCE_KEYS, MULTIPHASE_LABELS)]
    loaded = _load(Path(eval_dir), rows, _inputs(columns))
    gates = []
    for row in rows:
        thresholds = {group: _dig(loaded.get(("multiphase", split, row.run)), row.prefix + ("threshold",))
                      for split, group in MULTIPHASE_SPLITS.items()}
        per_split = {group: f"{value:g}" for group, value in thresholds.items() if value is not None}
        if per_split:
            gates.append(f"{row.label} = {_summary(per_split)}")
    notes = ["decision thresholds: " + ", ".join(gates)] if gates else []
    return _assemble("multi_phase_table1", "Multi-phase space-group identification, in-library and out-of-library",
                     eval_dir, rows, columns, scale=1.0, decimals=3, second=False, extra_notes=notes, loaded=loaded)


#: Table name -> builder(eval_dir) -> Table | None, in the order they are written.
TABLE_BUILDERS: dict[str, Callable[[str | Path], Table | None]] = {
    "single_phase_table1": single_phase_table1,
    "single_phase_table2": single_phase_table2,
    "ablation": ablation_table,
    "superclass_accuracy": superclass_table,
    "multi_phase_table1": multi_phase_table1,
}


def build_tables(eval_dir: str | Path) -> list[Table]:
    """Every table whose inputs exist; a malformed JSON raises before anything is written."""
    return [table for build in TABLE_BUILDERS.values() if (table := build(eval_dir)) is not None]


def write_table(table: Table, out_dir: str | Path) -> list[Path]:
    """Write ``{name}.md``, ``{name}.csv``, ``{name}.tex`` and ``{name}.caption.txt`` atomically."""
    out = Path(out_dir)
    texts = {".md": to_markdown(table), ".csv": to_csv(table), ".tex": to_latex(table),
             ".caption.txt": table.caption + "\n"}
    paths = []
    for suffix, text in texts.items():
        path = out / f"{table.name}{suffix}"
        write_bytes_atomic(path, text.encode("utf-8"))
        paths.append(path)
    return paths


def write_all_tables(eval_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Build every table whose inputs exist under ``eval_dir`` and write each into ``out_dir``."""
    return [path for table in build_tables(eval_dir) for path in write_table(table, out_dir)]
