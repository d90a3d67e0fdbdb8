"""The ``xrdbench`` command line: one subcommand per pipeline stage.

Snakemake rules call these subcommands, passing each stage's slice of the
validated config as JSON (``--options``), so that a change to one stage's
options reruns only that stage and what depends on it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from xrdbench import __version__
from xrdbench.errors import XrdbenchError

log = logging.getLogger("xrdbench")


def _options(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def cmd_fetch(args: argparse.Namespace) -> None:
    from xrdbench.sources import fetch_source

    manifest = fetch_source(args.source, args.options, args.manifest, threads=args.threads,
                            cache_dir=args.cache_dir, progress=not args.quiet)
    log.info("%s: %d structures -> %s", args.source, len(manifest), args.manifest)


def cmd_label(args: argparse.Namespace) -> None:
    from xrdbench.sources import read_manifest
    from xrdbench.symmetry import label_manifest
    from xrdbench.symmetry.labels import write_labels

    manifest = read_manifest(args.manifest)
    structures, rejected = label_manifest(manifest, Path(args.manifest).parent, threads=args.threads,
                                          progress=not args.quiet, **args.options)
    write_labels(structures, rejected, args.out, args.rejected)
    log.info("labelled %d structures, rejected %d -> %s", len(structures), len(rejected), args.out)
    if len(rejected):
        log.info("rejections by reason: %s", rejected["reason"].value_counts().to_dict())


def cmd_split(args: argparse.Namespace) -> None:
    import pandas as pd

    from xrdbench.atomic import write_parquet_atomic
    from xrdbench.splits import build_splits

    table = pd.read_parquet(args.structures)
    splits = build_splits(table, threads=args.threads, progress=not args.quiet, **args.options)
    write_parquet_atomic(splits, args.out)
    log.info("splits %s -> %s", splits["split"].value_counts().to_dict(), args.out)


def _grid(options: dict):
    from xrdbench.simulate.grids import Grid

    grid = options["grid"]
    return Grid(name=grid["name"], two_theta_min_deg=grid["two_theta_min_deg"],
                two_theta_max_deg=grid["two_theta_max_deg"], n_bins=grid["n_bins"])


def cmd_simulate(args: argparse.Namespace) -> None:
    import pandas as pd

    from xrdbench.simulate.banks import Simulation, shard_rows, simulate_shard

    table = pd.read_parquet(args.structures)
    rows = shard_rows(len(table), args.shards, args.shard)
    simulate_shard(table, rows, args.out, simulation=Simulation(**args.options["simulation"]),
                   grid=_grid(args.options), threads=args.threads, progress=not args.quiet)
    log.info("simulated rows %d-%d of %s -> %s", rows.start, rows.stop, args.structures, args.out)


def cmd_bank(args: argparse.Namespace) -> None:
    import pandas as pd

    from xrdbench.provenance import file_sha256
    from xrdbench.simulate.banks import Simulation, assemble_bank, bank_attributes

    table = pd.read_parquet(args.structures)
    simulation = Simulation(**args.options["simulation"])
    failed = assemble_bank(table, args.shard_files, args.out, args.failed, grid=_grid(args.options),
                           render_rule=args.options["grid"].get("render_rule", "max"),
                           chunk_rows=args.options["chunk_rows"],
                           attributes=bank_attributes(simulation, args.options, file_sha256(args.structures)),
                           threads=args.threads, progress=not args.quiet)
    log.info("bank %s: %d patterns, %d left out", args.out, len(table) - len(failed), len(failed))


def cmd_augment(args: argparse.Namespace) -> None:
    import pandas as pd

    from xrdbench.augment.datasets import build_dataset_split

    dask_options = dict(args.dask)
    dask_options.setdefault("workers", args.threads)
    if dask_options.get("workers") is None:
        dask_options["workers"] = args.threads
    n = build_dataset_split(args.bank, pd.read_parquet(args.splits), args.out, name=args.dataset, split=args.split,
                            options=args.options, dask_options=dask_options,
                            block_rows=dask_options.get("block_rows"), progress=not args.quiet)
    log.info("dataset %s/%s: %d samples -> %s", args.dataset, args.split, n, args.out)


def cmd_train(args: argparse.Namespace) -> None:
    import torch

    from xrdbench.train.runs import train_run

    torch.set_num_threads(args.threads)
    options = args.options
    summary = train_run(args.run, options["run"], args.train, args.val, args.out, preset=options["preset"],
                        train_dataset=args.dataset, train_overrides=options.get("train", {}),
                        device=options.get("device", "auto"), progress=not args.quiet)
    if "best_val_micro_f1" in summary:
        log.info("%s: best val micro-F1 %.4f at step %d, %.0f s -> %s", args.run, summary["best_val_micro_f1"],
                 summary["best_step"], summary["train_wall_s"], args.out)
    else:
        log.info("%s: best val top-1 %.4f at epoch %d, %.0f s -> %s", args.run, summary["best_val_top1"],
                 summary["best_epoch"], summary["train_wall_s"], args.out)


def cmd_evaluate(args: argparse.Namespace) -> None:
    import torch

    from xrdbench.evaluate.runs import evaluate_run

    torch.set_num_threads(args.threads)
    metrics = evaluate_run(args.model, args.data, args.out, dataset=args.dataset, split=args.split,
                           device=args.options.get("device", "auto"))
    if "top1" in metrics:
        log.info("%s on %s/%s: top-1 %.4f, top-5 %.4f (%d samples) -> %s.json", metrics["meta"]["run"], args.dataset,
                 args.split, metrics["top1"], metrics["top5"], metrics["n_samples"], args.out)
    else:
        chosen = metrics.get("best_gate", metrics)
        log.info("%s on %s/%s: micro-F1 %.4f at %.2f, cover@K* %.4f (%d samples) -> %s.json", metrics["meta"]["run"],
                 args.dataset, args.split, chosen["micro_f1"], chosen["threshold"], chosen["cover@K*"],
                 metrics["n_samples"], args.out)


def cmd_report(args: argparse.Namespace) -> None:
    if args.what == "augmentations":
        from xrdbench.report.augmentations import plot_augmentations

        if not args.bank:
            raise XrdbenchError("report augmentations needs --bank")
        plot_augmentations(args.bank, args.out, args.options)
        written = [args.out]
    elif args.what == "tables":
        from xrdbench.report.tables import write_all_tables

        written = write_all_tables(Path(args.results) / "eval", args.out)
    else:
        import torch

        from xrdbench.report.figures import write_all_figures

        torch.set_num_threads(args.threads)
        options = args.options
        written = write_all_figures(args.results, args.out, train_dataset=options.get("train_dataset", "mof"),
                                    eval_dataset=options.get("eval_dataset", "mof"), split=options.get("split", "test"),
                                    tsne_split=options.get("tsne_split", "train"),
                                    tsne_n=options.get("tsne_samples", 3000), seed=options.get("seed", 0))
    for path in written:
        log.info("report -> %s", path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xrdbench", description=(
        "Reference pipeline for machine learning on powder X-ray diffraction. "
        "Stages: fetch -> label -> split -> simulate -> bank -> augment -> train -> evaluate -> report. "
        "Usually run through Snakemake: snakemake --cores 32 all"))
    parser.add_argument("--version", action="version", version=f"xrdbench {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def stage(name: str, help_text: str, handler) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--options", type=_options, default={},
                         help="this stage's config section as a JSON object (defaults filled by the schema)")
        sub.add_argument("--threads", type=int, default=1, help="worker processes (default 1)")
        sub.set_defaults(handler=handler)
        return sub

    fetch = stage("fetch", "fetch one structure source into CIFs plus manifest.parquet", cmd_fetch)
    fetch.add_argument("source", choices=["coremof", "synthetic", "oqmd", "local"])
    fetch.add_argument("--manifest", required=True, help="output manifest; CIFs go beside it in cifs/")
    fetch.add_argument("--cache-dir", help="resumable download cache (oqmd)")

    label = stage("label", "parse each CIF once, label it with spglib, record rejections", cmd_label)
    label.add_argument("--manifest", required=True, help="a source's manifest.parquet")
    label.add_argument("--out", required=True, help="structures table (parquet)")
    label.add_argument("--rejected", required=True, help="rejections with reasons (csv)")

    split = stage("split", "assign material-level train/val/test splits without leaks", cmd_split)
    split.add_argument("--structures", required=True, help="a labelled structures table (parquet)")
    split.add_argument("--out", required=True, help="split table (parquet)")
    simulate = stage("simulate", "simulate the stick patterns of one shard of a structures table", cmd_simulate)
    simulate.add_argument("--structures", required=True, help="a labelled structures table (parquet)")
    simulate.add_argument("--shard", type=int, required=True, help="this shard's index, from 0")
    simulate.add_argument("--shards", type=int, required=True, help="number of shards")
    simulate.add_argument("--out", required=True, help="the shard's sticks (.npz)")

    bank = stage("bank", "gather simulated shards into a zarr pattern bank on a named grid", cmd_bank)
    bank.add_argument("--structures", required=True, help="the structures table the shards came from")
    bank.add_argument("--out", required=True, help="the bank (.zarr directory)")
    bank.add_argument("--failed", required=True, help="structures left out, with reasons (csv)")
    bank.add_argument("shard_files", nargs="+", help="the shards (.npz), in order")

    augment = stage("augment", "build one dataset split (augmented, mixed) into zarr with dask", cmd_augment)
    augment.add_argument("--dataset", required=True, help="dataset name (a key of datasets)")
    augment.add_argument("--split", required=True, help="dataset split name")
    augment.add_argument("--bank", required=True, help="the bank (.zarr) the samples draw from")
    augment.add_argument("--splits", required=True, help="the source's material split table (parquet)")
    augment.add_argument("--dask", type=_options, default={}, help="the dask config section as JSON")
    augment.add_argument("--out", required=True, help="the dataset split (.zarr directory)")

    train = stage("train", "train one benchmark run (model + options) on a dataset's train split", cmd_train)
    train.add_argument("--run", required=True, help="run name (a key of single_phase.runs or multi_phase.runs)")
    train.add_argument("--dataset", required=True, help="the training dataset's name")
    train.add_argument("--train", required=True, help="the train split (.zarr)")
    train.add_argument("--val", required=True, help="the validation split (.zarr), which picks the best checkpoint")
    train.add_argument("--out", required=True, help="the model directory; a last.pt there is resumed")

    evaluate = stage("evaluate", "evaluate a trained run on a val or test split", cmd_evaluate)
    evaluate.add_argument("--model", required=True, help="a trained model directory")
    evaluate.add_argument("--dataset", required=True, help="the evaluation dataset's name")
    evaluate.add_argument("--split", required=True, help="the split's name (never train)")
    evaluate.add_argument("--data", required=True, help="the split (.zarr)")
    evaluate.add_argument("--out", required=True, help="output prefix: PREFIX.json, .predictions.parquet "
                          "(and .confusion.csv for single-phase runs)")

    from xrdbench.predict import add_predict_command
    from xrdbench.regenerate import add_regenerate_command

    add_predict_command(commands)
    add_regenerate_command(commands)

    report = stage("report", "write the report's tables or figures from the pipeline's outputs", cmd_report)
    report.add_argument("what", choices=["augmentations", "tables", "figures"],
                        help="augmentations: one pattern after each effect (needs --bank); tables: the papers' "
                             "tables from results/eval; figures: the papers' figures from results/")
    report.add_argument("--bank", help="the bank to draw a sample from (augmentations)")
    report.add_argument("--results", default="results", help="the results directory (tables, figures)")
    report.add_argument("--out", required=True, help="the figure (.png), or the output directory (tables, figures)")
    return parser


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    # `snakemake --cores 32` on a laptop grants 32 threads; more worker processes than CPUs only cost memory.
    args.threads = max(1, min(args.threads, available_cpus()))
    try:
        args.handler(args)
    except XrdbenchError as error:
        print(f"xrdbench {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
