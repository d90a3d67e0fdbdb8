"""A compact, columnar form of a crystal structure, so later stages never re-parse CIFs.

A record is a flat dict of list columns that parquet (pyarrow) stores natively:

- ``lattice_matrix``: 9 floats, the lattice vectors a, b, c as rows, in Å (row-major);
- one entry per scatterer, i.e. per (site, species) pair, so a site shared by
  several species or partly vacant round-trips exactly:

  - ``site_index``: the site the scatterer belongs to (0-based);
  - ``site_species``: element symbol, oxidation state stripped;
  - ``site_occupancy``: fractional occupancy in [0, 1];
  - ``site_frac_coords``: 3 fractional coordinates per scatterer, flattened.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from pymatgen.core import Lattice, Structure

RECORD_COLUMNS = ("lattice_matrix", "site_index", "site_species", "site_occupancy", "site_frac_coords")


def _element_symbol(species) -> str:
    # Species and Element both expose .symbol without the oxidation state ("Fe", not "Fe2+").
    return species.symbol


def structure_to_record(structure: Structure) -> dict:
    """Flatten a structure into the list columns described in the module docstring."""
    site_index, species, occupancy, frac_coords = [], [], [], []
    for index, site in enumerate(structure):
        for specie, amount in site.species.items():
            site_index.append(index)
            species.append(_element_symbol(specie))
            occupancy.append(float(amount))
            frac_coords.extend(float(x) for x in site.frac_coords)
    return dict(
        lattice_matrix=np.asarray(structure.lattice.matrix, dtype=np.float64).ravel().tolist(),
        site_index=site_index,
        site_species=species,
        site_occupancy=occupancy,
        site_frac_coords=frac_coords,
    )


def record_to_structure(record: Mapping) -> Structure:
    """Rebuild the pymatgen Structure from a record (or a DataFrame row holding one)."""
    lattice = Lattice(np.asarray(record["lattice_matrix"], dtype=np.float64).reshape(3, 3))
    coords = np.asarray(record["site_frac_coords"], dtype=np.float64).reshape(-1, 3)
    sites: dict[int, tuple[dict[str, float], np.ndarray]] = {}
    for entry, (index, symbol, amount) in enumerate(
            zip(record["site_index"], record["site_species"], record["site_occupancy"])):
        composition, _ = sites.setdefault(int(index), ({}, coords[entry]))
        composition[str(symbol)] = composition.get(str(symbol), 0.0) + float(amount)
    ordered = [sites[index] for index in sorted(sites)]
    return Structure(lattice, [composition for composition, _ in ordered],
                     [position for _, position in ordered], coords_are_cartesian=False)
