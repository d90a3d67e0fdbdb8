"""What every output store records about how it was made: config hash and package versions."""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import PackageNotFoundError, version

RECORDED_PACKAGES = ("xrdbench", "numpy", "scipy", "pymatgen", "spglib", "zarr", "dask", "torch", "pyxtal")


def config_hash(section) -> str:
    """sha256 of a config section in canonical JSON (sorted keys), so equal configs hash equal."""
    return hashlib.sha256(json.dumps(section, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def package_versions() -> dict[str, str]:
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
