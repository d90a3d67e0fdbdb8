"""Shared fixtures: small real structures and the repository root."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def rocksalt() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


# ---------------------------------------------------------------- small real banks, for stages after simulation

FCC = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
ROCKSALT_PAIRS = [("Na", "Cl"), ("K", "Cl"), ("Mg", "O"), ("Ca", "O"), ("Li", "F"), ("Na", "Br"), ("K", "Br"),
                  ("Sr", "O"), ("Ba", "O"), ("Ni", "O"), ("Rb", "I"), ("Ag", "Cl")]


def structures_table(n_materials: int = 24) -> pd.DataFrame:
    """A labelled structures table of simple real crystals (rocksalt, CsCl, wurtzite types)."""
    from xrdbench.structures import structure_to_record
    from xrdbench.symmetry import SUPERCLASSES, space_group_table

    labels = space_group_table()
    rows = []
    for i in range(n_materials):
        cation, anion = ROCKSALT_PAIRS[i % len(ROCKSALT_PAIRS)]
        a = 4.0 + 0.11 * i
        kind = i % 3
        if kind == 0:
            structure = Structure(Lattice.cubic(a), [cation] * 4 + [anion] * 4, np.vstack([FCC, FCC + 0.5]) % 1)
            group = 225
        elif kind == 1:
            structure = Structure(Lattice.cubic(a * 0.6), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])
            group = 221
        else:
            structure = Structure(Lattice.hexagonal(a * 0.8, a * 1.3), [cation, cation, anion, anion],
                                  [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.38],
                                   [2 / 3, 1 / 3, 0.88]])
            group = 186
        rows.append(dict(id=f"m{i:03d}", formula=structure.composition.reduced_formula, space_group=group,
                         **labels.loc[group, list(SUPERCLASSES)].to_dict(), **structure_to_record(structure)))
    return pd.DataFrame(rows)


def build_bank(table: pd.DataFrame, directory: Path, grid) -> Path:
    """Simulate and assemble a real bank of ``table`` on ``grid``; returns the store path."""
    from xrdbench.simulate.banks import Simulation, assemble_bank, shard_rows, simulate_shard

    shard = directory / "shard.npz"
    simulate_shard(table, shard_rows(len(table), 1, 0), shard, simulation=Simulation(), grid=grid, progress=False)
    bank = directory / f"{grid.name}.zarr"
    assemble_bank(table, [shard], bank, directory / "failed.csv", grid=grid, render_rule="max", chunk_rows=8,
                  attributes={"wavelength_angstrom": 1.54184}, progress=False)
    return bank


@pytest.fixture(autouse=True)
def _seeded_global_rngs():
    """Tests that draw from the global RNGs get the same draws on every run."""
    import torch

    torch.manual_seed(0)
    np.random.seed(0)
