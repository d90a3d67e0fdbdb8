"""Expected wall time of a preset: a small fraction of each stage timed here, extrapolated to full size.

Usage::

    python benchmarks/preset_walltime.py                      # workflow/presets/medium.yaml, --cores 32
    python benchmarks/preset_walltime.py --configfile workflow/presets/paper.yaml --cores 64

The config is resolved as Snakemake resolves it (``config.yaml``, then each
``--configfile`` merged over it, schema defaults filled in, relations checked:
:func:`xrdbench.regenerate.resolved_config` and :func:`xrdbench.config.check_config`);
every size below is read from it. For each stage the script times a few items with
the pipeline's own functions, in this process, and scales up:

- fetch + label (``label_manifest``) + simulate (``simulate_record``, each bank's grid) of
  ``--structures`` CoRE MOF structures (the first refcodes of the hash-ranked sample: a
  uniform random subset of the full sample) and ``--synthetic`` synthetic crystals (one
  each from as many random space groups); the kept fraction measured here also sizes the
  later stages unless ``results/structures/{source}.parquet`` exists;
- augmentation: ``--mixtures`` mixtures (``sample_mixture_parameters`` + ``augment_batch``,
  the dataset's resolved augment options, on its grid), drawn from the bank in
  ``results/banks/`` when one exists, else from the sticks simulated above;
- training: every run of ``single_phase.runs`` and ``multi_phase.runs`` is built by name at
  the preset size on the preset grid, and its trainer objective
  (``xrdbench.train.trainer.make_objective``, MGDA included) takes ``--steps``
  forward+backward+clip+optimizer steps on random inputs and plausible targets. A step at
  the run's batch size can take minutes on a CPU, so after a warm-up step of 2 rows, one
  step of 2 rows and ``--steps`` steps of more rows (about ``--step-budget`` seconds, at
  least ``--min-rows``; the fastest counts) are timed, and a per-step + per-row cost fitted
  through the two sizes gives the step at the run's batch size. On a loaded machine the fit
  is noisy (within about 2-3x); an idle machine and larger ``--min-rows`` tighten it. Validation and evaluation are forward passes,
  each taken as a third of a training step per row (the usual forward:backward ≈ 1:2).

Serial CPU time is core-seconds: seconds measured here × threads used here. Wall time
for ``--cores N`` assumes ideal scaling inside a job (the rule's ``threads``; Snakemake
caps them at N): data-prep stages spread over min(N, jobs × threads) cores, and the
training/evaluation jobs (``single_phase.threads``/``multi_phase.threads`` cores each)
are packed onto the N cores longest-first. Stages are summed, as the DAG mostly
serialises them. Not measured: splits (StructureMatcher), clean datasets (copies), bank
assembly, reports, data loading and checkpointing during training.
"""

from __future__ import annotations

import argparse
import heapq
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PRESET = "workflow/presets/medium.yaml"


# ---------------------------------------------------------------- config


def need(config: dict, dotted: str):
    """``config[a][b]...`` for ``a.b...``; a clear error naming the key when it is missing."""
    node = config
    for depth, key in enumerate(dotted.split(".")):
        if not isinstance(node, dict) or key not in node:
            where = ".".join(dotted.split(".")[:depth + 1])
            raise SystemExit(f"preset_walltime: the resolved config has no {where!r} "
                             f"(needed for {dotted}); check the config files and the schema")
        node = node[key]
    return node


def load_config(configfiles: list[str]) -> dict:
    from xrdbench.config import check_config
    from xrdbench.errors import ConfigError
    from xrdbench.regenerate import resolved_config

    from snakemake.exceptions import WorkflowError

    try:
        config = resolved_config(REPO, configfiles)
        check_config(config)
    except (ConfigError, WorkflowError) as error:  # WorkflowError: the schema validation failed
        raise SystemExit(f"preset_walltime: invalid config: {str(error).strip()}") from error
    return config


# ---------------------------------------------------------------- timing helpers


def local_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class Row:
    def __init__(self, stage, measured, rate, count, serial_s, wall_s, note=""):
        self.stage, self.measured, self.rate, self.count = stage, measured, rate, count
        self.serial_s, self.wall_s, self.note = serial_s, wall_s, note


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def pack(jobs: list[tuple[float, int]], cores: int) -> float:
    """Makespan of jobs (seconds, cores each) started longest-first whenever enough cores are free."""
    free, clock, running = cores, 0.0, []  # running: heap of (end time, cores)
    for seconds, need_cores in sorted(jobs, reverse=True):
        need_cores = min(need_cores, cores)
        while free < need_cores:
            clock, released = heapq.heappop(running)
            free += released
        heapq.heappush(running, (clock + seconds, need_cores))
        free -= need_cores
    return max([end for end, _ in running], default=0.0)


# ---------------------------------------------------------------- structures: fetch, label, simulate


def structure_stages(config: dict, source: str, n_sample: int, cores: int, workdir: Path, sticks: dict,
                     kept: dict) -> list[Row]:
    """Rows for fetching, labelling and simulating ``source``; fills ``sticks`` and ``kept``."""
    from threadpoolctl import threadpool_limits

    from xrdbench.simulate.banks import Simulation, simulate_record
    from xrdbench.simulate.grids import grid_from_config
    from xrdbench.sources import fetch_source
    from xrdbench.symmetry.labels import label_manifest

    options = dict(need(config, f"sources.{source}"))
    options.pop("enabled", None)
    threads = min(int(need(config, "threads")), cores)
    if source == "coremof":
        from xrdbench.sources.coremof import select_entries

        full = len(select_entries(list(options["sets"]), options.get("max_structures"), int(options["seed"])))
        sample = dict(options, max_structures=min(n_sample, full))
        what = f"{sample['max_structures']} CoRE MOF CIFs"
    elif source == "synthetic":
        from xrdbench.sources.synthetic import ALL_SPACE_GROUPS

        groups = list(options.get("space_groups") or ALL_SPACE_GROUPS)
        full = int(need(config, "sources.synthetic.per_space_group")) * len(groups)
        picked = sorted(np.random.default_rng(0).choice(groups, size=min(n_sample, len(groups)), replace=False))
        sample = dict(options, per_space_group=1, space_groups=[int(g) for g in picked])
        what = f"{len(picked)} crystals (1 per random group)"
    else:
        return [Row(f"{source}: fetch/label/simulate", "not measured (needs network or local files)", "", "",
                    None, None)]

    rows = []
    with threadpool_limits(1):
        start = time.perf_counter()
        manifest = fetch_source(source, sample, workdir / source / "manifest.parquet", progress=False)
        fetch_s = time.perf_counter() - start
        n = len(manifest)
        if source == "coremof":
            # One process streams the .tar.xz archives once (a random sample already streams nearly all of
            # them: a fixed cost) and writes and summarises each chosen CIF (a per-structure cost, timed
            # again on its own): fixed + full × per-CIF.
            from xrdbench.sources.manifest import row_from_cif

            start = time.perf_counter()
            for row in manifest.itertuples():
                row_from_cif(source, row.id, workdir / "again", (workdir / source / row.path).read_bytes(), "")
            per_cif = (time.perf_counter() - start) / n
            fixed = max(fetch_s - n * per_cif, 0.0)
            serial = fixed + full * per_cif
            rows.append(Row(f"{source}: fetch", what, f"{fixed:.1f} s + {1000 * per_cif:.1f} ms/CIF", full, serial,
                            serial, "1 process: archive streaming + per-CIF write/summary"))
        else:
            serial = fetch_s / n * full
            rows.append(Row(f"{source}: fetch (pyxtal)", what, f"{n / fetch_s:.1f} /s", full, serial,
                            serial / threads))

        labels = need(config, "labels")
        start = time.perf_counter()
        table, rejected = label_manifest(manifest, workdir / source, symprec=labels["symprec"],
                                         angle_tolerance=labels["angle_tolerance"], max_sites=labels["max_sites"],
                                         occupancy=labels["occupancy"], threads=1, progress=False)
        label_s = time.perf_counter() - start
        serial = label_s / n * full
        rows.append(Row(f"{source}: label", f"{n} structures, 1 process", f"{n / label_s:.1f} /s", full, serial,
                        serial / threads, f"{len(table)}/{n} kept"))
        kept[source] = (len(table) / n, f"measured here on {n}")
        kept_full = round(full * len(table) / n)

        simulate = need(config, "simulate")
        simulation = Simulation(**{key: simulate[key] for key in ("engine", "wavelength_angstrom", "cell", "symprec")})
        records = table.to_dict("records")
        parallel = min(cores, int(simulate["shards"]) * threads)
        for grid_name in need(config, f"simulate.banks.{source}"):
            grid = grid_from_config(dict(need(config, f"grids.{grid_name}"), name=grid_name))
            window = (grid.two_theta_min_deg, grid.two_theta_max_deg)
            start = time.perf_counter()
            results = [simulate_record(record, simulation, window) for record in records]
            sim_s = time.perf_counter() - start
            lengths = [len(two_theta) for two_theta, _ in results]
            sticks[(source, grid_name)] = (np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                                           np.concatenate([t for t, _ in results]),
                                           np.concatenate([i for _, i in results]))
            serial = sim_s / max(len(records), 1) * kept_full
            rows.append(Row(f"{source}: simulate {grid_name}", f"{len(records)} structures ({simulation.engine})",
                            f"{len(records) / sim_s:.1f} /s", kept_full, serial, serial / parallel,
                            f"{simulate['shards']} shards × {threads} threads"))
    return rows


def kept_from_results(source: str) -> tuple[float, str] | None:
    """The kept fraction of the last run's labelling, when results/structures/{source}.parquet exists."""
    table = REPO / "results" / "structures" / f"{source}.parquet"
    rejected = table.with_suffix(".rejected.csv")
    if not (table.is_file() and rejected.is_file()):
        return None
    import pandas as pd
    import pyarrow.parquet as pq

    n_kept = pq.ParquetFile(table).metadata.num_rows
    n_rejected = len(pd.read_csv(rejected))
    if n_kept + n_rejected == 0:
        return None
    return n_kept / (n_kept + n_rejected), f"{n_kept}/{n_kept + n_rejected} in {table.relative_to(REPO)}"


# ---------------------------------------------------------------- datasets


def material_counts(config: dict, kept: dict) -> dict[str, dict[str, float]]:
    """Source → material split → expected materials (full structures × kept × split fraction)."""
    fractions = need(config, "splits.fractions")
    counts = {}
    for source, spec in need(config, "sources").items():
        if not spec.get("enabled"):
            continue
        if source == "coremof":
            from xrdbench.sources.coremof import select_entries

            full = len(select_entries(list(spec["sets"]), spec.get("max_structures"), int(spec["seed"])))
        elif source == "synthetic":
            from xrdbench.sources.synthetic import ALL_SPACE_GROUPS

            full = spec["per_space_group"] * len(spec.get("space_groups") or ALL_SPACE_GROUPS)
        else:
            full = spec.get("max_structures") or 0
        total = full * kept.get(source, (1.0, ""))[0]
        counts[source] = {name: total * share for name, share in fractions.items()}
        counts[source]["in_library"] = counts[source]["train"]  # drawn from the train materials
    return counts


def split_rows(config: dict, dataset: str, split: str, materials: dict) -> int:
    spec = need(config, f"datasets.{dataset}")
    split_spec = need(config, f"datasets.{dataset}.splits.{split}")
    pool = sum(materials.get(spec["source"], {}).get(name, 0) for name in split_spec["materials"])
    if split_spec.get("balanced"):
        pool = min(pool, int(need(config, "splits.balanced_per_group")) * 230)
    n = split_spec.get("n_samples")
    if spec["kind"] == "mixture":
        return int(n if n is not None else pool)
    return int(min(pool, n) if n is not None else pool)


def augmentation_rows(config: dict, n_mixtures: int, cores: int, sticks: dict, materials: dict) -> list[Row]:
    from threadpoolctl import threadpool_limits

    from xrdbench.augment.pipeline import augment_batch
    from xrdbench.augment.sampling import sample_mixture_parameters
    from xrdbench.config import dataset_options
    from xrdbench.simulate.grids import grid_from_config

    rows = []
    threads = min(int(need(config, "threads")), cores)
    for name, spec in need(config, "datasets").items():
        if spec["kind"] == "clean" or not need(config, f"sources.{spec['source']}.enabled"):
            continue
        options = dataset_options(config, name)
        grid = grid_from_config(dict(need(config, f"grids.{spec['grid']}"), name=spec["grid"]))
        bank_path = REPO / "results" / "banks" / spec["source"] / f"{spec['grid']}.zarr"
        if bank_path.is_dir():
            import zarr

            bank = zarr.open_group(str(bank_path), mode="r")
            pool = (bank["stick_offsets"][:], bank["stick_two_theta_deg"][:], bank["stick_intensity"][:])
            origin = f"{len(pool[0]) - 1} phases of {bank_path.relative_to(REPO)}"
            wavelength = bank.attrs.get("wavelength_angstrom")
            if wavelength:
                options["augment"] = dict(options["augment"], wavelength_angstrom=wavelength)
        elif (spec["source"], spec["grid"]) in sticks:
            pool = sticks[(spec["source"], spec["grid"])]
            origin = f"{len(pool[0]) - 1} phases simulated above"
        else:
            rows.append(Row(f"augment {name}", "not measured: no sticks for its bank", "", "", None, None))
            continue
        n_pool = len(pool[0]) - 1
        splits = list(spec["splits"])
        total = sum(split_rows(config, name, split, materials) for split in splits)
        block = 250
        with threadpool_limits(1):
            params = sample_mixture_parameters(np.arange(block), 0, 0, n_pool, options["augment"])
            augment_batch(pool, params, grid, options["augment"])  # warm-up: look-up tables, caches
            start = time.perf_counter()
            for first in range(0, n_mixtures, block):
                index = np.arange(first, min(first + block, n_mixtures))
                params = sample_mixture_parameters(index, 0, int(spec.get("seed", 0)), n_pool, options["augment"])
                if spec["kind"] == "single_phase":
                    params["k"][:] = 1
                    params["phase_index"][:, 1:] = -1
                augment_batch(pool, params, grid, options["augment"])
            seconds = time.perf_counter() - start
        serial = seconds / n_mixtures * total
        parallel = min(cores, len(splits) * threads)
        rows.append(Row(f"augment {name}", f"{n_mixtures} samples from {origin}", f"{n_mixtures / seconds:.0f} /s",
                        total, serial, serial / parallel,
                        f"{grid.n_bins} bins; {len(splits)} splits × {threads} threads"))
    return rows


# ---------------------------------------------------------------- training


def time_run(name: str, run: dict, section: dict, grid, device, torch_threads: int, steps: int,
             step_budget: float, min_rows: int) -> dict:
    """Seconds per training step at the run's batch size and per row of forward, and what was timed."""
    import torch

    from xrdbench.models.registry import build_model
    from xrdbench.config import section_train_overrides
    from xrdbench.train.runs import run_kind, run_tasks
    from xrdbench.train.trainer import make_objective, make_optimizer, train_options

    tasks = run_tasks(name, run)
    overrides = {**section_train_overrides(section, run), **run.get("train", {})}  # as the workflow and run_spec
    options = train_options(run["model"], overrides)
    torch.manual_seed(0)
    model = build_model(run["model"], preset=section["preset"], two_theta_deg=grid.two_theta_deg, tasks=tasks,
                        **run.get("options", {})).to(device)
    model.train()
    objective = make_objective(options, tuple(tasks))
    optimizer = make_optimizer(model, options)
    multi = run_kind(run) == "multi_phase"
    generator = torch.Generator().manual_seed(0)

    def batch(rows: int) -> dict:
        x = torch.rand(rows, grid.n_bins, generator=generator) * (1.0 if multi else 100.0)
        if multi:
            y = torch.zeros(rows, 230)
            for row in range(rows):  # 1–3 phases per sample
                y[row, torch.randint(0, 230, (int(torch.randint(1, 4, (1,), generator=generator)),),
                                     generator=generator)] = 1.0
            return {"x": x, "mask": torch.ones(rows, grid.n_bins), "y": y}
        return {"x": x, "targets": {task: torch.randint(0, n, (rows,), generator=generator) for task, n in tasks.items()}}

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step(data) -> float:
        sync()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=options["precision"] == "bf16"):
            objective.backward(model, data, options, device)
        torch.nn.utils.clip_grad_norm_(model.parameters(), options["grad_clip"])
        optimizer.step()
        sync()
        return time.perf_counter() - start

    batch_rows = int(options["batch_rows"])
    small = min(2, batch_rows)
    step(batch(small))  # warm-up: one-off allocations and kernel set-up
    t_small = step(batch(small))
    if device.type == "cuda" or batch_rows <= small:
        rows = batch_rows
    else:  # as many rows as fit the budget, were the small step all per-row cost; at least min_rows
        rows = min(batch_rows, max(min_rows, int(step_budget * small / max(t_small, 1e-6))))
    data = batch(rows)
    t_rows = min(step(data) for _ in range(steps))  # the fastest: other load only ever adds time
    if rows == batch_rows:
        per_step, fit = t_rows, ""
    elif t_rows > t_small:  # a per-step cost plus a per-row cost, through the two sizes
        per_row = (t_rows - t_small) / (rows - small)
        per_step, fit = t_rows + per_row * (batch_rows - rows), f"; linear in rows from {small} and {rows}"
    else:  # noise hid the per-row cost: proportional, an upper bound
        per_step, fit = t_rows * batch_rows / rows, f"; ×{batch_rows / rows:.3g} (proportional)"
    # Validation and evaluation are forward passes only; a forward is taken as a third of a training step.
    per_row_forward = per_step / 3 / batch_rows
    return {"options": options, "multi": multi, "per_step": per_step, "per_row_forward": per_row_forward,
            "measured": f"{steps}×{rows} + 1×{small} rows{fit}, batch {batch_rows}", "threads": torch_threads}


def training_rows(config: dict, benchmark: str, materials: dict, device, cores_here: int, steps: int,
                  step_budget: float, min_rows: int, only: list[str] | None = None) -> list[tuple[Row, float]]:
    """(row, job core-seconds) per run of ``benchmark``."""
    import torch

    from xrdbench.simulate.grids import grid_from_config

    section = need(config, benchmark)
    out = []
    if not section["runs"]:
        return out
    train_dataset = need(config, f"datasets.{section['train_dataset']}")
    grid_name = train_dataset["grid"]
    grid = grid_from_config(dict(need(config, f"grids.{grid_name}"), name=grid_name))
    rule_threads = int(need(config, f"{benchmark}.threads"))
    torch_threads = 1 if device.type == "cuda" else min(rule_threads, cores_here)
    torch.set_num_threads(torch_threads)
    n_train = split_rows(config, section["train_dataset"], "train", materials)
    n_val = split_rows(config, section["train_dataset"], "val", materials)
    n_eval = sum(split_rows(config, dataset, split, materials)
                 for dataset, splits in section["evaluate"].items() if dataset in need(config, "datasets")
                 and need(config, f"sources.{config['datasets'][dataset]['source']}.enabled") for split in splits)
    for name, run in section["runs"].items():
        label = f"{benchmark.split('_')[0]} {name}"
        if only is not None and name not in only:
            continue
        print(f"  timing {label} ...", file=sys.stderr, flush=True)
        try:
            timed = time_run(name, run, section, grid, device, torch_threads, steps, step_budget, min_rows)
        except Exception as error:  # noqa: BLE001 - one unbuildable run is reported, the rest still timed
            message = str(error).split("\n")[0]
            out.append((Row(label, "FAILED to build or step", "", "", None, None,
                            f"{type(error).__name__}: {message}"), 0.0))
            continue
        options = timed["options"]
        if timed["multi"]:
            n_steps = int(options["steps"])
            n_forward = math.ceil(n_steps / int(options["eval_every"])) * n_val + n_eval
            count = f"{n_steps} steps + {n_forward} fwd"
        else:
            n_steps = int(options["epochs"]) * math.ceil(n_train / int(options["batch_rows"]))
            n_forward = int(options["epochs"]) * n_val + n_eval
            count = f"{options['epochs']} ep × {math.ceil(n_train / int(options['batch_rows']))} = {n_steps} steps + {n_forward} fwd"
        job_s = n_steps * timed["per_step"] + n_forward * timed["per_row_forward"]
        core_s = job_s * timed["threads"]
        rate = f"{timed['per_step']:.2f} s/step"
        out.append((Row(label, timed["measured"], rate, count, core_s, None,
                        f"{grid.n_bins} bins, preset {section['preset']}, {timed['threads']} torch threads here"),
                    core_s))
    return out


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", nargs="+", default=[DEFAULT_PRESET],
                        help="config files merged over config.yaml, as snakemake --configfile (default: %(default)s)")
    parser.add_argument("--cores", type=int, default=32, help="cores of the target machine (snakemake --cores)")
    parser.add_argument("--structures", type=int, default=40, help="CoRE MOF structures to fetch, label, simulate")
    parser.add_argument("--synthetic", type=int, default=24, help="synthetic crystals to generate, label, simulate")
    parser.add_argument("--mixtures", type=int, default=1000, help="augmented samples per dataset")
    parser.add_argument("--steps", type=int, default=1,
                        help="timed training steps per run at the larger size (the fastest counts), after the "
                             "warm-up and 2-row steps")
    parser.add_argument("--min-rows", type=int, default=16,
                        help="fewest rows of the larger timed step (capped at the batch size)")
    parser.add_argument("--runs", nargs="+", help="time only these training runs (default: every run)")
    parser.add_argument("--step-budget", type=float, default=2.0,
                        help="seconds a timed CPU step should take; rows per step are chosen from it")
    parser.add_argument("--threads-here", type=int, default=None,
                        help="torch threads for the timings (default: the rule's threads, capped at the cores here); "
                             "1 is steadier on a loaded machine")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="device of the training timings")
    parser.add_argument("--skip-training", action="store_true", help="time the data stages only")
    args = parser.parse_args()
    if min(args.cores, args.steps, args.structures, args.synthetic, args.mixtures) < 1 or args.min_rows < 3:
        raise SystemExit("preset_walltime: --cores, --steps, --structures, --synthetic, --mixtures must be ≥ 1; "
                         "--min-rows ≥ 3")

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("preset_walltime: --device cuda, but torch sees no CUDA device here")
    device = torch.device(args.device)
    os.chdir(REPO)
    config = load_config(args.configfile)
    if args.runs:
        known = set(need(config, "single_phase.runs")) | set(need(config, "multi_phase.runs"))
        unknown = sorted(set(args.runs) - known)
        if unknown:
            raise SystemExit(f"preset_walltime: --runs {unknown}: not a run of this config (runs: {sorted(known)})")
    cores_here = local_cores() if args.threads_here is None else max(1, args.threads_here)
    started = time.perf_counter()
    print(f"config: config.yaml + {' + '.join(args.configfile)}; target: --cores {args.cores}", flush=True)
    print(f"measured on: {platform.node()} {platform.processor() or platform.machine()}, {cores_here} cores "
          f"available, load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}, training on {device}",
          flush=True)
    if os.getloadavg()[0] > local_cores() - 0.5:
        print(f"warning: this machine is busy (load {os.getloadavg()[0]:.1f} on {local_cores()} cores); the timings "
              "are inflated and noisy", flush=True)

    rows: list[Row] = []
    sticks: dict = {}
    kept: dict = {}
    with tempfile.TemporaryDirectory(prefix="preset_walltime_") as workdir:
        for source, n_sample in (("coremof", args.structures), ("synthetic", args.synthetic), ("oqmd", 0),
                                 ("local", 0)):
            if need(config, f"sources.{source}.enabled"):
                print(f"  timing {source} ...", file=sys.stderr, flush=True)
                rows += structure_stages(config, source, n_sample, args.cores, Path(workdir), sticks, kept)
    kept_notes = []
    for source in list(kept):
        previous = kept_from_results(source)
        if previous is not None:
            kept[source] = previous
        kept_notes.append(f"{source} {100 * kept[source][0]:.0f}% ({kept[source][1]})")
    materials = material_counts(config, kept)
    print("  timing augmentation ...", file=sys.stderr, flush=True)
    rows += augmentation_rows(config, args.mixtures, args.cores, sticks, materials)
    data_wall = sum(row.wall_s or 0.0 for row in rows)
    data_serial = sum(row.serial_s or 0.0 for row in rows)

    jobs: list[tuple[float, int]] = []
    train_rows: list[Row] = []
    if not args.skip_training:
        for benchmark in ("single_phase", "multi_phase"):
            for row, core_s in training_rows(config, benchmark, materials, device, cores_here, args.steps,
                                             args.step_budget, args.min_rows, args.runs):
                rule_threads = min(int(need(config, f"{benchmark}.threads")), args.cores)
                if row.serial_s is not None:
                    job_s = core_s / (rule_threads if device.type == "cpu" else 1)
                    row.wall_s = job_s  # one job's wall time, alone, with its rule's threads
                    jobs.append((job_s, rule_threads if device.type == "cpu" else args.cores))
                train_rows.append(row)
    rows += train_rows
    train_wall = pack(jobs, args.cores) if device.type == "cpu" else sum(seconds for seconds, _ in jobs)
    train_serial = sum(row.serial_s or 0.0 for row in train_rows)

    header = ("stage", "measured", "rate here", "full-run count", "serial CPU", f"wall @{args.cores}", "note")
    table = [header] + [(r.stage, r.measured, r.rate, str(r.count), duration(r.serial_s), duration(r.wall_s), r.note)
                        for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    print()
    for index, line in enumerate(table):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[-1])
        if index == 0:
            print("  ".join("-" * width for width in widths) + "  " + "-" * 4)
    print()
    print(f"kept after labelling: {'; '.join(kept_notes) or 'n/a'}; material splits "
          f"{need(config, 'splits.fractions')}")
    print(f"data stages: {duration(data_serial)} CPU, {duration(data_wall)} wall on {args.cores} cores")
    if not args.skip_training:
        unit = device.type.upper()
        if device.type == "cpu":
            packing = ("training/evaluation jobs packed onto the cores "
                       f"(single-phase {min(need(config, 'single_phase.threads'), args.cores)}, "
                       f"multi-phase {min(need(config, 'multi_phase.threads'), args.cores)} threads each); "
                       "the wall column of a run is that job alone")
        else:
            packing = "jobs one after another on one GPU"
        print(f"training + evaluation on {unit}: {duration(train_serial)} "
              f"{'CPU' if device.type == 'cpu' else 'device'} time, {duration(train_wall)} wall ({packing})")
        print(f"TOTAL expected wall time on {args.cores} cores ({unit} training): {duration(data_wall + train_wall)}")
        if device.type == "cpu":
            print(f"torch threads here: min(rule threads, {cores_here}: the cores available or --threads-here); "
                  "job times assume ideal "
                  "scaling to the rule's threads. GPU time is not measured on this run "
                  "(rerun with --device cuda on a machine with a GPU).")
    print(f"(this estimate took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
