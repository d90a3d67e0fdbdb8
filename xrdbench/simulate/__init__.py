"""Stage ``banks``: stick patterns from structures, and their rendering on named 2θ grids."""

from xrdbench.simulate.grids import NAMED_GRIDS, Grid, grid_from_config, render_stick_lists, render_sticks
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
    "NAMED_GRIDS",
    "Grid",
    "HKLFamilies",
    "get_engine",
    "grid_from_config",
    "render_stick_lists",
    "render_sticks",
    "simulate_sticks",
    "simulate_sticks_arrays",
    "simulate_sticks_pymatgen",
    "structure_to_arrays",
]
