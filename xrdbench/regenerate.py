"""Rebuild one dataset split byte for byte: ``xrdbench regenerate --dataset NAME --split SPLIT``.

A split is a pure function of its bank, its material split table, its options and
the code (every sample draws from ``default_rng([sample_index, split_id, seed])``),
so the way to rebuild it identically is to run the very rule that built it:
``snakemake --force results/datasets/NAME/SPLIT.zarr`` with the workflow's own
Snakefile and the same config files. Snakemake validates the config, resolves the
same options JSON and calls the same ``xrdbench augment`` command; inputs that are
missing or out of date are rebuilt first, as in any run.

The dataset and split are checked against the resolved config first, so a typo
fails with the names that exist instead of a Snakemake traceback. When the split
existed before, its digest (sha256 over every file of the zarr store, in path
order) is recorded and compared with the rebuilt one.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from xrdbench.errors import ConfigError, XrdbenchError

SCHEMA = Path("workflow/schemas/config.schema.yaml")
BASE_CONFIG = "config.yaml"  # the Snakefile's own `configfile:`, always loaded first


class RegenerateError(XrdbenchError, RuntimeError):
    """Snakemake failed to rebuild the split; the message carries the end of its output."""


@dataclass(frozen=True)
class Regenerated:
    """What a regeneration did: the store, its digest before (None if it did not exist) and after."""

    path: Path
    before: str | None
    after: str

    @property
    def identical(self) -> bool | None:
        return None if self.before is None else self.before == self.after


def dataset_split_path(dataset: str, split: str) -> str:
    """The split's target, relative to the workflow directory (as in workflow/rules/datasets.smk)."""
    return f"results/datasets/{dataset}/{split}.zarr"


def store_digest(path: str | Path) -> str:
    """sha256 over every file of a zarr store: relative path and bytes, in sorted path order."""
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(file.relative_to(root).as_posix().encode() + b"\0")
        digest.update(file.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def _configfiles(configfile: str | Path | Sequence[str | Path] | None) -> list[Path]:
    if configfile is None:
        return []
    if isinstance(configfile, (str, Path)):
        return [Path(configfile)]
    return [Path(item) for item in configfile]


def _merge(base: dict, override: dict) -> dict:
    """Snakemake's update_config: nested mappings merge, anything else replaces."""
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def resolved_config(directory: str | Path = ".", configfile=BASE_CONFIG) -> dict:
    """The config Snakemake would run with: config.yaml, then each configfile over it, schema defaults filled."""
    from snakemake.utils import validate

    directory = Path(directory)
    config: dict = {}
    files = [directory / BASE_CONFIG] if (directory / BASE_CONFIG).is_file() else []
    files += [path if path.is_absolute() else directory / path for path in _configfiles(configfile)]
    for path in files:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        _merge(config, yaml.safe_load(path.read_text()) or {})
    validate(config, str(directory / SCHEMA))
    return config


def check_dataset_split(config: dict, dataset: str, split: str) -> None:
    """Raise a ConfigError naming the dataset or split when the config does not define it (or cannot build it)."""
    datasets = config.get("datasets", {})
    if dataset not in datasets:
        raise ConfigError(f"regenerate: dataset {dataset!r} is not in the config (datasets: {sorted(datasets)})")
    splits = datasets[dataset].get("splits", {})
    if split not in splits:
        raise ConfigError(f"regenerate: dataset {dataset!r} has no split {split!r} (its splits: {sorted(splits)})")
    source = datasets[dataset].get("source")
    if source and not config["sources"][source]["enabled"]:
        raise ConfigError(f"regenerate: dataset {dataset!r} draws from source {source!r}, which is disabled "
                          f"(sources.{source}.enabled: false)")


def regenerate(dataset: str, split: str, *, configfile: str | Path | Sequence[str | Path] | None = BASE_CONFIG,
               cores: int = os.cpu_count() or 1, directory: str | Path = ".", snakefile: str | Path | None = None,
               extra_args: Sequence[str] = ()) -> Regenerated:
    """Rebuild ``results/datasets/{dataset}/{split}.zarr`` under ``directory`` with the workflow's own rule.

    ``configfile`` is one config file or a list, as given to ``snakemake --configfile`` when
    the split was first built (config.yaml is always loaded first, by the Snakefile);
    ``snakefile`` defaults to ``directory/Snakefile``.
    """
    directory = Path(directory).resolve()
    snakefile = Path(snakefile) if snakefile else directory / "Snakefile"
    if not snakefile.is_file():
        raise ConfigError(f"regenerate: no Snakefile at {snakefile}; run from the repository root or pass directory")
    files = _configfiles(configfile)
    config = resolved_config(directory, files)
    from xrdbench.config import check_config

    check_config(config)
    check_dataset_split(config, dataset, split)

    target = dataset_split_path(dataset, split)
    store = directory / target
    before = store_digest(store) if store.is_dir() else None
    command = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--directory", str(directory),
               "--snakefile", str(snakefile), *extra_args, "--force", target]
    if files:  # last: --configfile takes several values and would swallow a target after it
        command += ["--configfile", *[str(path if path.is_absolute() else directory / path) for path in files]]
    # The rules call the xrdbench CLI: use the one installed beside this interpreter.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True)
    if result.returncode != 0 or not store.is_dir():
        raise RegenerateError(f"snakemake failed to rebuild {target} (exit {result.returncode}); the rule's log is "
                              f"results/logs/build_dataset/{dataset}/{split}.log\n"
                              f"{(result.stdout + result.stderr)[-4000:]}")
    return Regenerated(path=store, before=before, after=store_digest(store))


def cmd_regenerate(args: argparse.Namespace) -> None:
    result = regenerate(args.dataset, args.split, configfile=args.configfile, cores=args.cores,
                        directory=args.directory)
    message = f"{result.path}: sha256 {result.after}"
    if result.identical is True:
        message += " (byte-identical to the previous build)"
    elif result.identical is False:
        message += f" (differs from the previous build, sha256 {result.before})"
    print(message)
    if result.identical is False:
        raise RegenerateError(f"{result.path} was rebuilt but differs from the previous build: has the config, "
                              "a bank or the code changed since it was built?")


def add_regenerate_command(subparsers) -> argparse.ArgumentParser:
    """``xrdbench regenerate``: for xrdbench.cli.build_parser's subparsers."""
    help_text = "rebuild one dataset split, byte-identically, with the workflow's own rule (snakemake --force)"
    sub = subparsers.add_parser("regenerate", help=help_text, description=help_text)
    sub.add_argument("--dataset", required=True, help="dataset name (a key of datasets)")
    sub.add_argument("--split", required=True, help="split name (a key of the dataset's splits)")
    sub.add_argument("--configfile", nargs="+", default=None, metavar="FILE",
                     help="config files the split was built with, as given to snakemake --configfile "
                          "(config.yaml is always loaded first)")
    sub.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores for snakemake (default: all)")
    sub.add_argument("--directory", default=".", help="the workflow directory (default: the current one)")
    sub.set_defaults(handler=cmd_regenerate, threads=1)  # cli.main clamps args.threads for every command
    return sub
