"""Checks on a validated config that a JSON schema cannot express.

The schema (workflow/schemas/config.schema.yaml) checks types and ranges and
fills in defaults; this module checks relations between keys, so an impossible
config fails before any job starts, with a message naming the key.
"""

from __future__ import annotations

import copy
from pathlib import Path

from xrdbench.errors import ConfigError
from xrdbench.splits import check_fractions


def check_config(config: dict) -> None:
    check_fractions(config["splits"]["fractions"])
    local = config["sources"]["local"]
    if local["enabled"]:
        if not local["path"]:
            raise ConfigError("sources.local.path: required when sources.local.enabled is true")
        if not Path(local["path"]).expanduser().is_dir():
            raise ConfigError(f"sources.local.path: {local['path']} is not a directory")
    for source, grids in config["simulate"]["banks"].items():
        for grid in grids:
            if grid not in config["grids"]:
                raise ConfigError(f"simulate.banks.{source}: grid {grid!r} is not defined under grids "
                                  f"(defined: {sorted(config['grids'])})")
    for name, grid in config["grids"].items():
        if not grid["two_theta_min_deg"] < grid["two_theta_max_deg"]:
            raise ConfigError(f"grids.{name}: two_theta_min_deg must be below two_theta_max_deg")
    for name, dataset in config.get("datasets", {}).items():
        missing = [key for key in ("source", "grid", "kind", "splits") if key not in dataset]
        if missing:
            raise ConfigError(f"datasets.{name}: missing {', '.join(missing)}")
        if not config["sources"][dataset["source"]]["enabled"]:
            continue
        if dataset["grid"] not in config["simulate"]["banks"][dataset["source"]]:
            raise ConfigError(f"datasets.{name}: there is no {dataset['source']} bank on grid {dataset['grid']!r}; "
                              f"add it to simulate.banks.{dataset['source']}")
    if not any(source["enabled"] for source in config["sources"].values()):
        raise ConfigError("sources: every source is disabled; enable at least one")
    check_single_phase(config)
    check_multi_phase(config)


def check_single_phase(config: dict) -> None:
    """The single-phase benchmark's datasets and splits exist."""
    check_benchmark(config, "single_phase")


def check_multi_phase(config: dict) -> None:
    """The multi-phase benchmark's datasets and splits exist, and its run names are its own."""
    check_benchmark(config, "multi_phase")
    section = config.get("multi_phase")
    if not section or not section["runs"]:
        return
    shared = sorted(set(section["runs"]) & set((config.get("single_phase") or {}).get("runs") or {}))
    if shared:
        raise ConfigError(f"multi_phase.runs.{shared[0]}: also a single_phase run name; "
                          "the two benchmarks' run names must differ")
    train = section["train"]
    if train.get("warmup_steps", 0) > train.get("steps", 1_000_000):
        raise ConfigError(f"multi_phase.train.warmup_steps: {train['warmup_steps']} is more than "
                          f"multi_phase.train.steps ({train['steps']})")


def check_benchmark(config: dict, name: str) -> None:
    """A benchmark's datasets and splits exist: train/val to train on, the evaluate splits to score."""
    section = config.get(name)
    if not section or not section["runs"]:
        return
    datasets = config.get("datasets", {})
    train = section["train_dataset"]
    if train not in datasets:
        raise ConfigError(f"{name}.train_dataset: {train!r} is not a dataset (defined: {sorted(datasets)})")
    missing = [split for split in ("train", "val") if split not in datasets[train]["splits"]]
    if missing:
        raise ConfigError(f"{name}.train_dataset: dataset {train!r} has no {' or '.join(missing)} split")
    for dataset, splits in section["evaluate"].items():
        if dataset not in datasets:
            raise ConfigError(f"{name}.evaluate.{dataset}: not a dataset (defined: {sorted(datasets)})")
        unknown = [split for split in splits if split not in datasets[dataset]["splits"]]
        if unknown:
            raise ConfigError(f"{name}.evaluate.{dataset}: dataset {dataset!r} has no split {unknown[0]!r} "
                              f"(it has {sorted(datasets[dataset]['splits'])})")


def deep_merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        merged[key] = deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else copy.deepcopy(value)
    return merged


def dataset_options(config: dict, name: str) -> dict:
    """A dataset's complete options: its own keys over the defaults, its augment over the global one."""
    dataset = config["datasets"][name]
    options = {key: value for key, value in dataset.items() if key != "augment"}
    options["augment"] = deep_merge(config.get("augment", {}), dataset.get("augment", {}))
    return options


def section_train_overrides(section: dict, run: dict) -> dict:
    """The trainer options a benchmark section (``single_phase``, ``multi_phase``) gives ``run``: its
    ``train``, overlaid with ``model_train`` of the run's model. The run's own ``train`` goes over these
    in :func:`xrdbench.train.runs.run_spec`, and each model's published preset under them."""
    return {**section["train"], **(section.get("model_train") or {}).get(run["model"], {})}
