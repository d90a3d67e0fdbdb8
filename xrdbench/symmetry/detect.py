"""Space-group detection for one structure, with spglib."""

from __future__ import annotations

import warnings

import numpy as np
import spglib
from pymatgen.core import Structure


def call_spglib(function, *args, **kwargs):
    """Call a spglib function; ``None`` when spglib cannot decide, whichever error style it uses.

    spglib 2.x signals failure by returning ``None`` with a DeprecationWarning, and
    will raise ``SpglibError`` once its old error handling is removed.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*OLD_ERROR_HANDLING.*", category=DeprecationWarning)
        try:
            return function(*args, **kwargs)
        except spglib.SpglibError:
            return None


def spglib_cell(structure: Structure) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The (lattice, fractional positions, species numbers) triple that spglib expects.

    Sites with mixed occupancy are typed by their majority species, so a
    disordered site keeps one identity (spglib has no notion of occupancy).
    """
    numbers = []
    for site in structure:
        species, _ = max(site.species.items(), key=lambda item: (item[1], str(item[0])))
        numbers.append(species.Z)
    return structure.lattice.matrix, structure.frac_coords, numbers


def space_group_number(structure: Structure, symprec: float = 0.1, angle_tolerance: float = -1.0) -> int | None:
    """International space-group number (1-230), or ``None`` when spglib cannot decide.

    ``symprec`` is in Å; ``angle_tolerance`` in degrees, with -1 meaning spglib's own choice.
    """
    dataset = call_spglib(spglib.get_symmetry_dataset, spglib_cell(structure), symprec=symprec,
                          angle_tolerance=angle_tolerance)
    return None if dataset is None else int(dataset.number)
