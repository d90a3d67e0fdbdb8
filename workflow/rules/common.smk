# Helpers shared by the rules: which sources are on, and each stage's options as JSON.
import json

from xrdbench.config import dataset_options, section_train_overrides
from xrdbench.report import figures as report_figures
from xrdbench.report import tables as report_tables


SOURCE_NAMES = ("coremof", "synthetic", "oqmd", "local")


wildcard_constraints:
    source="|".join(SOURCE_NAMES),
    grid="[A-Za-z0-9_-]+",
    dataset="[A-Za-z0-9_-]+",
    split="[A-Za-z0-9_-]+",
    shard=r"\d+",


def enabled_sources():
    return [name for name in SOURCE_NAMES if config["sources"][name]["enabled"]]


def options_json(section):
    """A config section as canonical JSON: the rule's params, so editing it reruns the rule."""
    return json.dumps({k: v for k, v in section.items() if k != "enabled"}, sort_keys=True)


def source_options(wildcards):
    return options_json(config["sources"][wildcards.source])


def quiet_flag():
    return "" if config["progress"] else "--quiet"


def enabled_banks():
    """(source, grid) pairs to build: each enabled source on each of its configured grids."""
    return [(source, grid) for source in enabled_sources() for grid in config["simulate"]["banks"][source]]


def simulation_options(grid, with_render):
    """The simulate stage's options for one grid; the render rule only matters to the bank."""
    simulation = {key: config["simulate"][key] for key in ("engine", "wavelength_angstrom", "cell", "symprec")}
    grid_options = dict(config["grids"][grid], name=grid)
    if not with_render:
        grid_options.pop("render_rule", None)
    options = {"simulation": simulation, "grid": grid_options}
    if with_render:
        options["chunk_rows"] = config["simulate"]["chunk_rows"]
    return json.dumps(options, sort_keys=True)


def bank_shards(source, grid):
    return expand("results/banks/{source}/{grid}.shards/{shard}.npz", source=source, grid=grid,
                  shard=range(config["simulate"]["shards"]))


def enabled_datasets():
    """(dataset, split) pairs whose source is enabled."""
    return [(name, split) for name, dataset in config["datasets"].items()
            if config["sources"][dataset["source"]]["enabled"] for split in dataset["splits"]]


def dataset_bank(dataset):
    spec = config["datasets"][dataset]
    return f"results/banks/{spec['source']}/{spec['grid']}.zarr"


def dataset_split_table(dataset):
    return f"results/splits/{config['datasets'][dataset]['source']}.parquet"


def dataset_options_json(dataset):
    return json.dumps(dataset_options(config, dataset), sort_keys=True)


def run_pattern(benchmark):
    """A benchmark's run names as a wildcard regex, so its rules never claim another benchmark's files."""
    return "|".join(sorted(config[benchmark]["runs"], key=len, reverse=True)) or "(?!)"


def run_json(benchmark, run):
    """The train command's options: the run, the preset, and the trainer options of every run
    overlaid with those of the run's model (``model_train``); the run's own ``train`` wins in the trainer."""
    section = config[benchmark]
    spec = section["runs"][run]
    return json.dumps({"run": spec, "preset": section["preset"], "train": section_train_overrides(section, spec),
                       "device": section["device"]}, sort_keys=True)


def benchmark_evaluations(benchmark):
    """results/eval/{dataset}/{run}/{split}.json of every run of a benchmark on each evaluate split."""
    section = config[benchmark]
    if section["train_dataset"] not in config["datasets"]:
        return []
    enabled = {name for name, _ in enabled_datasets()}
    return [f"results/eval/{dataset}/{run}/{split}.json" for run in section["runs"]
            for dataset, splits in section["evaluate"].items() if dataset in enabled for split in splits]


def benchmark_model_file(benchmark, name):
    """The model directory file ``name`` of a run of ``benchmark``, as an input pattern with {run}."""
    return f"results/models/{config[benchmark]['train_dataset']}/{{run}}/{name}"


def single_phase_run_pattern():
    return run_pattern("single_phase")


def single_phase_run_json(run):
    return run_json("single_phase", run)


def single_phase_evaluations():
    return benchmark_evaluations("single_phase")


def multi_phase_run_pattern():
    return run_pattern("multi_phase")


def multi_phase_run_json(run):
    return run_json("multi_phase", run)


def multi_phase_evaluations():
    return benchmark_evaluations("multi_phase")


def all_outputs():
    splits = expand("results/splits/{source}.parquet", source=enabled_sources())
    banks = [f"results/banks/{source}/{grid}.zarr" for source, grid in enabled_banks()]
    datasets = [f"results/datasets/{name}/{split}.zarr" for name, split in enabled_datasets()]
    figures = ["results/reports/figures/augmentations.png"] if "multiphase" in config["datasets"] else []
    return splits + banks + datasets + figures + all_evaluations() + report_outputs()


# ---------------------------------------------------------------- report


def all_evaluations():
    return single_phase_evaluations() + multi_phase_evaluations()


def all_histories():
    return [f"results/models/{config[benchmark]['train_dataset']}/{run}/history.csv"
            for benchmark in ("single_phase", "multi_phase") if benchmark_evaluations(benchmark)
            for run in config[benchmark]["runs"]]


def _configured(benchmark, runs):
    """Which of ``runs`` (run names the report knows) this config trains and evaluates."""
    return [run for run in runs if run in config[benchmark]["runs"]] if benchmark_evaluations(benchmark) else []


def expected_tables():
    """The tables xrdbench.report.tables will write: those with at least one configured run."""
    evaluate = config["single_phase"]["evaluate"]
    models = _configured("single_phase", [run for run, _ in report_tables.MODELS])
    names = []
    if models and "mof" in evaluate:
        names += ["single_phase_table1", "superclass_accuracy"]
    if models and "inorganic" in evaluate:
        names.append("single_phase_table2")
    if len(_configured("single_phase", [run for run, _ in report_tables.ABLATIONS])) > 1 and "mof" in evaluate:
        names.append("ablation")
    if _configured("multi_phase", [run for run, _ in report_tables.MULTIPHASE_MODELS]):
        names.append("multi_phase_table1")
    return names


def expected_table_csvs():
    return [(name, f"results/reports/tables/{name}.csv") for name in expected_tables()]


def expected_table_companions():
    return [f"results/reports/tables/{name}.{ext}" for name in expected_tables() for ext in ("md", "tex", "caption.txt")]


def expected_figures():
    """The figures xrdbench.report.figures will draw from this config's runs, in its order."""
    single = set(_configured("single_phase", config["single_phase"]["runs"]))
    multi = set(_configured("multi_phase", config["multi_phase"]["runs"]))
    table_models = single & {run for run, _ in report_tables.MODELS}
    multi_models = multi & {run for run, _ in report_tables.MULTIPHASE_MODELS}
    wanted = {
        "mgda_losses": bool(single & {"xrdecoupler", "xrdecoupler_fixed_weights"}),
        "spc_bars": bool(table_models) and config["report"]["split"] in config["single_phase"]["evaluate"].get("mof", []),
        "tsne": "xrdecoupler" in single,
        "confusion_family": bool(table_models) and config["report"]["split"] in config["single_phase"]["evaluate"].get("mof", []),
        "val_f1_curves": bool(multi_models),
        "slot_diversity": "phase_cluster_transformer" in multi,
        "stratified": bool(multi_models),
    }
    return [name for name in report_figures.FIGURES if wanted[name]]


def report_options_json():
    return json.dumps({**config["report"], "train_dataset": config["single_phase"]["train_dataset"],
                       "eval_dataset": "mof"}, sort_keys=True)


def report_outputs():
    tables = [path for _, path in expected_table_csvs()] + expected_table_companions()
    return tables + [f"results/reports/figures/{name}.png" for name in expected_figures()]
