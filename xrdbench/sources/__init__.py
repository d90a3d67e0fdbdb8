"""Structure sources: each fetches CIFs into ``resources/structures/{source}/`` plus a manifest.

Every source module exposes the same entry point::

    fetch(options, source_dir, *, threads=1, cache_dir=None, progress=True) -> list[manifest row]

and :func:`fetch_source` runs one by name, writing the manifest last and
atomically, so a manifest on disk always describes a complete fetch.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pandas as pd

from xrdbench.errors import ConfigError
from xrdbench.sources.manifest import CIF_DIRNAME, read_manifest, write_manifest

SOURCES = ("coremof", "synthetic", "oqmd", "local")


def fetch_source(name: str, options: dict, manifest_path: str | Path, *, threads: int = 1,
                 cache_dir: str | Path | None = None, progress: bool = True) -> pd.DataFrame:
    """Fetch one source into the manifest's directory and write the manifest."""
    if name not in SOURCES:
        raise ConfigError(f"sources: unknown source {name!r}; expected one of {list(SOURCES)}")
    module = importlib.import_module(f"xrdbench.sources.{name}")
    source_dir = Path(manifest_path).parent
    # CIFs left by an earlier, different fetch must not linger beside the new manifest.
    shutil.rmtree(source_dir / CIF_DIRNAME, ignore_errors=True)
    source_dir.mkdir(parents=True, exist_ok=True)
    rows = module.fetch(options, source_dir, threads=threads,
                        cache_dir=Path(cache_dir) if cache_dir else None, progress=progress)
    return write_manifest(rows, manifest_path)


__all__ = ["SOURCES", "fetch_source", "read_manifest"]
