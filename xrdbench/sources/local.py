"""Any directory of CIFs, for example a licensed CSD export.

Options (``sources.local`` in config):

- ``path``: the directory to read (required when the source is enabled);
- ``pattern``: a glob below it, recursive with ``**`` (default ``**/*.cif``).

The material id is the CIF's path below ``path`` without its suffix, with
``/`` replaced by ``__`` so ids stay unique across subdirectories. CIF bytes are
copied untouched; the labels stage decides what is usable.
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from xrdbench.errors import ConfigError, SourceError
from xrdbench.sources.manifest import row_from_cif

SOURCE = "local"


def structure_id(relative: Path) -> str:
    return "__".join(relative.with_suffix("").parts)


def fetch(options: dict, source_dir: Path, *, threads: int = 1, cache_dir: Path | None = None,
          progress: bool = True) -> list[dict]:
    if not options.get("path"):
        raise ConfigError("sources.local.path: set it to a directory of CIFs to enable the local source")
    root = Path(options["path"]).expanduser()
    if not root.is_dir():
        raise SourceError(f"sources.local.path: {root} is not a directory")
    files = sorted(path for path in root.glob(options.get("pattern", "**/*.cif")) if path.is_file())
    if not files:
        raise SourceError(f"sources.local: no file matches {options.get('pattern')!r} under {root}")
    rows = []
    for path in tqdm(files, desc="local", unit="cif", disable=not progress):
        relative = path.relative_to(root)
        rows.append(row_from_cif(SOURCE, structure_id(relative), source_dir, path.read_bytes(),
                                 provenance=str(path.resolve())))
    return rows
