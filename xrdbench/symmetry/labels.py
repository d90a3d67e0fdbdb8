"""The labels stage: parse each CIF once, assign its space group and superclasses, or say why not.

Output is a structures table (manifest columns, ``space_group``, every name in
``SUPERCLASSES`` and the compact structure record of ``xrdbench.structures``)
and a rejected table (``id``, ``path``, ``reason``, ``detail``). Reasons, in the
order they are checked:

- ``unreadable``: the CIF is missing or empty;
- ``unparseable``: pymatgen raises, or reads no structure from it;
- ``partial_occupancy``: a site is partly occupied or shared and the policy is
  ``"reject"`` (or ``"order"`` left no site at all);
- ``too_many_sites``: more than ``max_sites`` sites after the occupancy policy;
- ``symmetry_undetermined``: spglib returns no dataset, typically because two
  atoms are closer than ``symprec``.

Occupancy policies (config key ``labels.occupancy``):

- ``"reject"``: drop any structure that is not fully ordered;
- ``"order"``: each site becomes its majority species with occupancy 1, ties
  going to the alphabetically last symbol (the same typing spglib sees in
  ``detect.spglib_cell``); a site whose total occupancy is below 0.5 is
  removed, as it is more often vacant than not;
- ``"keep"``: fractional occupancies are kept; the simulator weights each
  scatterer by its occupancy, and spglib types each site by its majority species.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pymatgen.core import Structure
from pymatgen.io.cif import CifParser

from xrdbench.atomic import write_csv_atomic, write_parquet_atomic
from xrdbench.parallel import ordered_map
from xrdbench.errors import ConfigError
from xrdbench.sources.manifest import MANIFEST_COLUMNS
from xrdbench.structures import RECORD_COLUMNS, structure_to_record
from xrdbench.symmetry.detect import space_group_number
from xrdbench.symmetry.tables import SUPERCLASSES, space_group_table

OCCUPANCY_POLICIES = ("reject", "order", "keep")
REJECTED_COLUMNS = ["id", "path", "reason", "detail"]
# Float tolerance on occupancy sums such as 1/3 + 1/6 read from a CIF.
_OCCUPANCY_EPS = 1e-6


class StructureRejected(Exception):
    """A structure left out of the labels, with its ``reason`` code and a human ``detail``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class _Settings:
    symprec: float
    angle_tolerance: float
    max_sites: int
    occupancy: str


def _warning_text(caught: list[warnings.WarningMessage]) -> str:
    return "; ".join(dict.fromkeys(str(w.message).strip() for w in caught))


def read_cif_structure(path: Path) -> Structure:
    """Parse the first structure of a CIF with pymatgen, in its conventional cell as written.

    Raises ``StructureRejected`` with reason ``unreadable`` or ``unparseable``; pymatgen's
    warnings are silenced but carried into the detail when the parse fails.
    """
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise StructureRejected("unreadable", f"{type(exc).__name__}: {exc}") from None
    if not text.strip():
        raise StructureRejected("unreadable", "empty file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            structures = CifParser.from_str(text).parse_structures(primitive=False)
        except Exception as exc:  # noqa: BLE001 - pymatgen raises many types on bad CIFs
            detail = f"{type(exc).__name__}: {exc}"
            structures = None
        else:
            detail = "no structure"
    if not structures:
        warned = _warning_text(caught)
        raise StructureRejected("unparseable", f"{detail}; warnings: {warned}" if warned else detail)
    return structures[0]


def order_structure(structure: Structure) -> Structure:
    """Majority species per site, occupancy 1; sites with total occupancy < 0.5 are removed."""
    species, coords = [], []
    for site in structure:
        if site.species.num_atoms < 0.5 - _OCCUPANCY_EPS:
            continue
        majority, _ = max(site.species.items(), key=lambda item: (item[1], str(item[0])))
        species.append(majority)
        coords.append(site.frac_coords)
    return Structure(structure.lattice, species, coords, coords_are_cartesian=False)


def apply_occupancy_policy(structure: Structure, policy: str) -> Structure:
    """The structure as the given policy (``reject``, ``order``, ``keep``) admits it."""
    if structure.is_ordered or policy == "keep":
        return structure
    if policy == "reject":
        shared = sum(1 for site in structure if not site.is_ordered)
        raise StructureRejected("partial_occupancy",
                                f"{shared} of {len(structure)} sites partly occupied or shared")
    ordered = order_structure(structure)
    if not len(ordered):
        raise StructureRejected("partial_occupancy", "no site has total occupancy >= 0.5")
    return ordered


def _label_structure(structure: Structure, settings: _Settings) -> dict:
    structure = apply_occupancy_policy(structure, settings.occupancy)
    if len(structure) > settings.max_sites:
        raise StructureRejected("too_many_sites", f"{len(structure)} sites > max_sites={settings.max_sites}")
    number = space_group_number(structure, settings.symprec, settings.angle_tolerance)
    if number is None:
        raise StructureRejected("symmetry_undetermined",
                                f"spglib found no symmetry at symprec={settings.symprec} Å, "
                                f"angle_tolerance={settings.angle_tolerance}°")
    return dict(formula=structure.composition.reduced_formula, n_sites=len(structure),
                volume=float(structure.volume), space_group=number, **structure_to_record(structure))


def _label_one(row: dict, source_dir: Path, settings: _Settings) -> tuple[bool, dict]:
    """(accepted, row): the labelled row, or the rejection row; never raises for a bad CIF."""
    path = row.get("path")
    try:
        if not isinstance(path, str) or not path:
            raise StructureRejected("unreadable", "manifest row has no path")
        labels = _label_structure(read_cif_structure(Path(source_dir) / path), settings)
    except StructureRejected as rejected:
        return False, dict(id=row["id"], path=path, reason=rejected.reason, detail=rejected.detail)
    except Exception as exc:  # noqa: BLE001 - one odd structure must not abort the run
        return False, dict(id=row["id"], path=path, reason="unparseable",
                           detail=f"unexpected {type(exc).__name__}: {exc}")
    return True, {**row, **labels}


def _map_rows(worker, rows: list[dict], threads: int, progress: bool) -> list[tuple[bool, dict]]:
    """Apply ``worker`` to every row, in manifest order, in-process or over worker processes."""
    chunksize = max(1, min(64, math.ceil(len(rows) / (8 * max(threads, 1)))))
    return ordered_map(worker, rows, threads=threads, chunksize=chunksize, desc="labels", unit="cif",
                       progress=progress)


def _structures_frame(rows: list[dict], manifest_columns: list[str]) -> pd.DataFrame:
    columns = [*manifest_columns, "space_group", *SUPERCLASSES, *RECORD_COLUMNS]
    frame = pd.DataFrame(rows, columns=[c for c in columns if c not in SUPERCLASSES])
    frame["space_group"] = frame["space_group"].astype("int64")
    frame["n_sites"] = frame["n_sites"].astype("Int64")
    frame["volume"] = frame["volume"].astype("float64")
    superclasses = space_group_table()[list(SUPERCLASSES)]
    frame = frame.join(superclasses, on="space_group")
    return frame[columns]


def label_manifest(manifest: pd.DataFrame, source_dir: Path, *, symprec: float = 0.1,
                   angle_tolerance: float = -1.0, max_sites: int = 2000, occupancy: str = "reject",
                   threads: int = 1, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Label every manifest row: (structures table, rejected table), both in manifest order.

    ``symprec`` is spglib's distance tolerance in Å, ``angle_tolerance`` in
    degrees (-1: spglib's default). ``threads`` worker processes parse the CIFs;
    the result does not depend on it. Workers are spawned, so with ``threads > 1``
    the caller's ``__main__`` must be importable (a module or script, not stdin).
    """
    if occupancy not in OCCUPANCY_POLICIES:
        raise ConfigError(f"labels.occupancy: unknown policy {occupancy!r}; expected one of {OCCUPANCY_POLICIES}")
    if threads < 1:
        raise ConfigError(f"labels.threads: must be >= 1, got {threads}")
    settings = _Settings(float(symprec), float(angle_tolerance), int(max_sites), occupancy)
    rows = manifest.to_dict(orient="records")
    worker = functools.partial(_label_one, source_dir=Path(source_dir), settings=settings)
    outcomes = _map_rows(worker, rows, threads, progress)
    accepted = [row for ok, row in outcomes if ok]
    rejected = pd.DataFrame([row for ok, row in outcomes if not ok], columns=REJECTED_COLUMNS)
    manifest_columns = list(dict.fromkeys([*manifest.columns, *MANIFEST_COLUMNS]))
    return _structures_frame(accepted, manifest_columns), rejected


def write_labels(structures: pd.DataFrame, rejected: pd.DataFrame, structures_path: str | Path,
                 rejected_path: str | Path) -> None:
    """Write the structures table (parquet) and the rejected table (CSV), each atomically."""
    write_parquet_atomic(structures, structures_path)
    write_csv_atomic(rejected.reindex(columns=REJECTED_COLUMNS), rejected_path)
