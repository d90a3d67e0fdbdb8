"""The manifest: one row per fetched structure, the contract between sources and labels.

Columns (``MANIFEST_COLUMNS``):

- ``id``: unique within the source, used as the material id downstream;
- ``source``: the source name (``coremof``, ``synthetic``, ``oqmd``, ``local``);
- ``formula``: reduced formula, ``None`` when the CIF could not be read;
- ``n_sites``: sites in the unit cell; ``volume``: cell volume in Å³;
- ``sha256``: of the CIF bytes as written;
- ``path``: the CIF, relative to the source directory;
- ``provenance``: where the structure came from (archive member, URL, seed, file).

The manifest is written last, atomically: its presence means the source is complete.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import gemmi
import pandas as pd
from pymatgen.core import Composition, Structure

from xrdbench.atomic import write_bytes_atomic, write_parquet_atomic

MANIFEST_COLUMNS = ["id", "source", "formula", "n_sites", "volume", "sha256", "path", "provenance"]
CIF_DIRNAME = "cifs"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cif_summary(cif_text: str) -> tuple[str | None, int | None, float | None]:
    """(reduced formula, sites in the unit cell, volume in Å³) from a quick gemmi read.

    This only fills the manifest; the authoritative parse is pymatgen's, in the
    labels stage. A CIF gemmi cannot read gets ``None`` everywhere here and is
    rejected, with its reason, by the labels stage.
    """
    try:
        block = gemmi.cif.read_string(cif_text).sole_block()
        small = gemmi.make_small_structure_from_block(block)
        sites = small.get_all_unit_cell_sites()
        if not sites:
            return None, None, None
        amounts: dict[str, float] = {}
        for site in sites:
            amounts[site.element.name] = amounts.get(site.element.name, 0.0) + site.occ
        formula = Composition(amounts).reduced_formula
        return formula, len(sites), float(small.cell.volume)
    except Exception:  # noqa: BLE001 - any failure here is reported by the labels stage
        return None, None, None


def write_cif(source_dir: Path, structure_id: str, cif_bytes: bytes) -> tuple[str, str]:
    """Write one CIF under ``source_dir/cifs/`` atomically; return (relative path, sha256)."""
    relative = f"{CIF_DIRNAME}/{structure_id}.cif"
    write_bytes_atomic(Path(source_dir) / relative, cif_bytes)
    return relative, sha256_hex(cif_bytes)


def row_from_cif(source: str, structure_id: str, source_dir: Path, cif_bytes: bytes, provenance: str) -> dict:
    """Write a CIF as it came (bytes untouched) and describe it as a manifest row."""
    path, digest = write_cif(source_dir, structure_id, cif_bytes)
    formula, n_sites, volume = cif_summary(cif_bytes.decode("utf-8", errors="replace"))
    return dict(id=structure_id, source=source, formula=formula, n_sites=n_sites, volume=volume,
                sha256=digest, path=path, provenance=provenance)


def row_from_structure(source: str, structure_id: str, source_dir: Path, structure: Structure,
                       provenance: str) -> dict:
    """Write a pymatgen Structure as CIF and describe it as a manifest row."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cif_bytes = structure.to(fmt="cif").encode()
    path, digest = write_cif(source_dir, structure_id, cif_bytes)
    return dict(id=structure_id, source=source, formula=structure.composition.reduced_formula,
                n_sites=len(structure), volume=float(structure.volume), sha256=digest, path=path,
                provenance=provenance)


def manifest_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    if frame["id"].duplicated().any():
        dupes = sorted(frame.loc[frame["id"].duplicated(), "id"].unique())[:5]
        raise ValueError(f"duplicate structure ids in manifest: {dupes}")
    frame["n_sites"] = frame["n_sites"].astype("Int64")
    frame["volume"] = frame["volume"].astype("float64")
    return frame.sort_values("id", kind="stable").reset_index(drop=True)


def write_manifest(rows: list[dict], path: str | Path) -> pd.DataFrame:
    frame = manifest_frame(rows)
    write_parquet_atomic(frame, path)
    return frame


def read_manifest(path: str | Path) -> pd.DataFrame:
    frame = pd.read_parquet(path)
    missing = set(MANIFEST_COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: not a manifest, missing columns {sorted(missing)}")
    return frame
