"""Checks on a validated config that a JSON schema cannot express.

The schema (workflow/schemas/config.schema.yaml) checks types and ranges and
fills in defaults; this module checks relations between keys, so an impossible
config fails before any job starts, with a message naming the key.
"""

from __future__ import annotations

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
    if not any(source["enabled"] for source in config["sources"].values()):
        raise ConfigError("sources: every source is disabled; enable at least one")
