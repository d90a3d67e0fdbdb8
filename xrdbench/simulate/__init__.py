"""Stage ``banks``: stick patterns from structures, and their rendering on named 2θ grids."""

from xrdbench.simulate.sticks import (
    ENGINES,
    HKLFamilies,
    get_engine,
    simulate_sticks,
    simulate_sticks_arrays,
    simulate_sticks_pymatgen,
    structure_to_arrays,
)

__all__ = [
    "ENGINES",
    "HKLFamilies",
    "get_engine",
    "simulate_sticks",
    "simulate_sticks_arrays",
    "simulate_sticks_pymatgen",
    "structure_to_arrays",
]
