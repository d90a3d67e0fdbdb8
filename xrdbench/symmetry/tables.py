"""Space-group superclasses, derived from spglib's 530 Hall settings.

Every label a classifier can be trained on (crystal system, Bravais lattice,
point group, ...) is a function of the space-group type. This module computes
those functions once from spglib's symmetry database rather than typing in a
table, so the names cannot drift from what spglib reports for a structure.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pandas as pd
import spglib

SUPERCLASSES = ("crystal_system", "lattice_system", "bravais_lattice", "centring",
                "point_group", "arithmetic_class", "laue_class")

# Crystal family -> first letter of the Bravais symbol (IUCr notation).
_FAMILY_LETTER = {"triclinic": "a", "monoclinic": "m", "orthorhombic": "o", "tetragonal": "t",
                  "trigonal": "h", "hexagonal": "h", "cubic": "c"}

# Lattice-translation vectors (fractional) that define each centring, besides the origin.
_CENTRING_VECTORS = {
    "A": {(0, 1 / 2, 1 / 2)},
    "B": {(1 / 2, 0, 1 / 2)},
    "C": {(1 / 2, 1 / 2, 0)},
    "I": {(1 / 2, 1 / 2, 1 / 2)},
    "F": {(0, 1 / 2, 1 / 2), (1 / 2, 0, 1 / 2), (1 / 2, 1 / 2, 0)},
    "R": {(2 / 3, 1 / 3, 1 / 3), (1 / 3, 2 / 3, 2 / 3)},
}

# Rotation order from the trace of a proper rotation matrix (any lattice basis).
_ORDER_FROM_TRACE = {3: 1, -1: 2, 0: 3, 1: 4, 2: 6}


def _standard_hall_numbers() -> dict[int, int]:
    """First Hall number of each of the 230 types: spglib's standard setting."""
    first: dict[int, int] = {}
    for hall in range(1, 531):
        first.setdefault(spglib.get_spacegroup_type(hall).number, hall)
    return first


def _proper_orders(rotations: np.ndarray) -> dict[bytes, int]:
    """Distinct proper parts det(W)·W of the point-group operations, with their orders.

    A rotoinversion -n has the n-fold rotation as its proper part, so axes are
    counted once whether the group carries n, -n or both.
    """
    orders = {}
    for rotation in rotations:
        proper = round(np.linalg.det(rotation)) * rotation
        orders[proper.astype(np.int8).tobytes()] = _ORDER_FROM_TRACE[int(np.trace(proper))]
    return orders


def crystal_system(rotations: np.ndarray) -> str:
    """Crystal system from the highest-order symmetry axes of a point group.

    Four threefold axes make a group cubic; otherwise a sixfold, threefold or
    fourfold axis gives hexagonal, trigonal or tetragonal; three twofold axes
    give orthorhombic and one monoclinic.
    """
    orders = list(_proper_orders(rotations).values())
    # A threefold axis carries two operations of order 3 (3+ and 3-); cubic groups have four such axes.
    if orders.count(3) >= 8:
        return "cubic"
    for order, system in ((6, "hexagonal"), (3, "trigonal"), (4, "tetragonal")):
        if order in orders:
            return system
    twofold = orders.count(2)
    return "orthorhombic" if twofold >= 3 else "monoclinic" if twofold == 1 else "triclinic"


def centring(translations: np.ndarray, rotations: np.ndarray) -> str:
    """Centring letter from the pure translations (identity rotation) of a setting."""
    identity = np.all(rotations == np.eye(3, dtype=rotations.dtype), axis=(1, 2))
    vectors = {tuple(np.round(t % 1.0, 6)) for t in translations[identity]} - {(0.0, 0.0, 0.0)}
    for letter, expected in _CENTRING_VECTORS.items():
        if vectors == {tuple(np.round(v, 6)) for v in expected}:
            return letter
    if vectors:
        raise ValueError(f"unrecognised centring translations {sorted(vectors)}")
    return "P"


def bravais_lattice(system: str, centring_letter: str) -> str:
    """Pearson-style Bravais symbol; A/B-centred cells are the C type in another setting."""
    letter = "C" if centring_letter in "ABC" else centring_letter
    return _FAMILY_LETTER[system] + letter


def _row(number: int, hall: int) -> dict:
    sg_type = spglib.get_spacegroup_type(hall)
    ops = spglib.get_symmetry_from_database(hall)
    rotations, translations = ops["rotations"], ops["translations"]
    point_ops = np.unique(rotations, axis=0)
    system = crystal_system(point_ops)
    letter = centring(translations, rotations)
    # Trigonal groups split by lattice: rhombohedral (R centring) or hexagonal (P).
    lattice = ("rhombohedral" if letter == "R" else "hexagonal") if system == "trigonal" else system
    # Friedel's law: diffraction adds an inversion centre, so the Laue class is G ∪ -G.
    laue_ops = np.unique(np.concatenate([point_ops, -point_ops]), axis=0)
    return dict(
        space_group=number,
        international_short=sg_type.international_short,
        hall_number=hall,
        crystal_system=system,
        lattice_system=lattice,
        bravais_lattice=bravais_lattice(system, letter),
        centring=letter,
        point_group=sg_type.pointgroup_international,
        arithmetic_class=sg_type.arithmetic_crystal_class_symbol,
        laue_class=spglib.get_pointgroup(laue_ops)[0],
        centrosymmetric=bool(np.any(np.all(point_ops == -np.eye(3, dtype=point_ops.dtype), axis=(1, 2)))),
    )


@functools.cache
def _space_group_table() -> pd.DataFrame:
    with warnings.catch_warnings():
        # spglib 2.x warns about its legacy error handling on every call; nothing here can fail.
        warnings.simplefilter("ignore", DeprecationWarning)
        rows = [_row(number, hall) for number, hall in sorted(_standard_hall_numbers().items())]
    return pd.DataFrame(rows).set_index("space_group")


def space_group_table() -> pd.DataFrame:
    """One row per space-group type (index ``space_group``, 1-230) with every superclass.

    Columns: ``international_short``, ``hall_number`` (spglib's standard
    setting), the names in ``SUPERCLASSES`` and ``centrosymmetric``.
    """
    return _space_group_table().copy()


@functools.cache
def _superclass_index(name: str) -> tuple[tuple[str, int], ...]:
    if name not in SUPERCLASSES:
        raise KeyError(f"unknown superclass {name!r}; expected one of {SUPERCLASSES}")
    values = pd.unique(_space_group_table()[name])
    return tuple((str(value), index) for index, value in enumerate(values))


def superclass_index(name: str) -> dict[str, int]:
    """Stable 0-based index of each value of a superclass, in order of first appearance by space group."""
    return dict(_superclass_index(name))
