# Helpers shared by the rules: which sources are on, and each stage's options as JSON.
import json

from xrdbench.config import dataset_options


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


def single_phase_run_pattern():
    """The single-phase run names as a wildcard regex, so their rules never claim another benchmark's files."""
    return "|".join(sorted(config["single_phase"]["runs"], key=len, reverse=True)) or "(?!)"


def single_phase_run_json(run):
    section = config["single_phase"]
    return json.dumps({"run": section["runs"][run], "preset": section["preset"], "train": section["train"],
                       "device": section["device"]}, sort_keys=True)


def single_phase_evaluations():
    section = config["single_phase"]
    if section["train_dataset"] not in config["datasets"]:
        return []
    enabled = {name for name, _ in enabled_datasets()}
    return [f"results/eval/{dataset}/{run}/{split}.json" for run in section["runs"]
            for dataset, splits in section["evaluate"].items() if dataset in enabled for split in splits]


def all_outputs():
    splits = expand("results/splits/{source}.parquet", source=enabled_sources())
    banks = [f"results/banks/{source}/{grid}.zarr" for source, grid in enabled_banks()]
    datasets = [f"results/datasets/{name}/{split}.zarr" for name, split in enabled_datasets()]
    figures = ["results/reports/figures/augmentations.png"] if "multiphase" in config["datasets"] else []
    return splits + banks + datasets + figures + single_phase_evaluations()
