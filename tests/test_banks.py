"""Pattern banks: chunked zarr, failures left out with reasons, deterministic, resumable."""

import numpy as np
import pandas as pd
import pytest
import zarr
from pymatgen.core import Lattice, Structure

from xrdbench.simulate import simulate_sticks_arrays
from xrdbench.simulate.banks import Simulation, assemble_bank, shard_rows, simulate_shard, simulation_cell
from xrdbench.simulate.grids import Grid, render_stick_lists
from xrdbench.structures import structure_to_record
from xrdbench.symmetry import SUPERCLASSES, space_group_table

GRID = Grid(name="test", two_theta_min_deg=5.0, two_theta_max_deg=90.0, n_bins=850)
FCC = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])


def _row(material_id, structure, space_group):
    labels = space_group_table().loc[space_group, list(SUPERCLASSES)].to_dict()
    return dict(id=material_id, space_group=space_group, **labels, **structure_to_record(structure))


@pytest.fixture(scope="module")
def table():
    rows = []
    for i, (cation, a) in enumerate([("Na", 5.64), ("K", 6.29), ("Mg", 4.21), ("Ca", 4.81), ("Li", 4.07)]):
        rows.append(_row(f"rs-{i}", Structure(Lattice.cubic(a), [cation] * 4 + ["Cl"] * 4,
                                              np.vstack([FCC, FCC + 0.5]) % 1), 225))
    rows.append(_row("hex-0", Structure(Lattice.hexagonal(3.2, 5.2), ["Zn", "Zn", "O", "O"],
                                        [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.38],
                                         [2 / 3, 1 / 3, 0.88]]), 186))
    # A cell so small that its first reflection lies beyond 90°: no peak in range.
    rows.append(_row("tiny-0", Structure(Lattice.cubic(0.9), ["H"], [[0, 0, 0]]), 221))
    broken = _row("broken-0", Structure(Lattice.cubic(4.0), ["Na"], [[0, 0, 0]]), 221)
    broken["site_species"] = ["Xx"]  # not an element: the simulation itself fails
    rows.append(broken)
    rows += [_row(f"rs-late-{i}", Structure(Lattice.cubic(5.0 + 0.1 * i), ["Na"] * 4 + ["Br"] * 4,
                                            np.vstack([FCC, FCC + 0.5]) % 1), 225) for i in range(6)]
    return pd.DataFrame(rows)


def build(table, tmp_path, n_shards, chunk_rows=4, threads=1, simulation=Simulation()):
    shards = []
    for shard in range(n_shards):
        path = tmp_path / f"shards-{n_shards}" / f"{shard}.npz"
        simulate_shard(table, shard_rows(len(table), n_shards, shard), path, simulation=simulation, grid=GRID,
                       threads=threads, progress=False)
        shards.append(path)
    bank = tmp_path / f"bank-{n_shards}-{chunk_rows}.zarr"
    failed = assemble_bank(table, shards, bank, tmp_path / f"failed-{n_shards}.csv", grid=GRID,
                           render_rule="max", chunk_rows=chunk_rows, attributes={"config_hash": "x"},
                           threads=threads, progress=False)
    return zarr.open_group(str(bank), mode="r"), failed


def test_shards_partition_the_rows():
    for n_rows, n_shards in [(0, 3), (10, 3), (7, 7), (1000, 64)]:
        rows = [shard_rows(n_rows, n_shards, k) for k in range(n_shards)]
        assert [i for r in rows for i in r] == list(range(n_rows))


def test_bank_layout_and_failures(table, tmp_path):
    bank, failed = build(table, tmp_path, n_shards=3)
    assert dict(zip(failed["id"], failed["reason"])) == {"tiny-0": "no_peaks_in_range",
                                                          "broken-0": "simulation_failed"}
    ids = bank["material_id"][:]
    assert list(ids) == [i for i in table["id"] if i not in ("tiny-0", "broken-0")]
    intensity = bank["intensity"][:]
    assert intensity.dtype == np.float32 and intensity.shape == (len(ids), GRID.n_bins)
    assert bank["intensity"].chunks == (4, GRID.n_bins)
    assert np.isfinite(intensity).all() and (intensity.max(axis=1) == 100).all()
    labels = table.set_index("id").loc[ids]
    assert (bank["space_group"][:] == labels["space_group"].to_numpy()).all()
    assert list(bank["crystal_system"][:]) == list(labels["crystal_system"])
    assert bank.attrs["grid"]["n_bins"] == GRID.n_bins and bank.attrs["render_rule"] == "max"


def test_sticks_are_the_simulation_of_the_primitive_cell_and_render_to_the_rows(table, tmp_path):
    bank, _ = build(table, tmp_path, n_shards=2)
    offsets = bank["stick_offsets"][:]
    two_theta, intensity = bank["stick_two_theta_deg"][:], bank["stick_intensity"][:]
    record = table.set_index("id").loc["hex-0"].to_dict()
    row = list(bank["material_id"][:]).index("hex-0")
    expected = simulate_sticks_arrays(*simulation_cell(record, "primitive", 0.1), 1.54184, (5.0, 90.0))
    np.testing.assert_array_equal(two_theta[offsets[row]:offsets[row + 1]], expected[0])
    np.testing.assert_array_equal(intensity[offsets[row]:offsets[row + 1]], expected[1])
    np.testing.assert_array_equal(bank["intensity"][:], render_stick_lists(offsets, two_theta, intensity, GRID))


def test_primitive_cell_matches_the_conventional_pattern(table):
    record = table.set_index("id").loc["rs-0"].to_dict()
    lattice, frac, species, occupancy = simulation_cell(record, "primitive", 0.1)
    assert len(species) == 2  # rocksalt: 8 atoms conventional, 2 primitive
    primitive = simulate_sticks_arrays(lattice, frac, species, occupancy, 1.54184, (5.0, 90.0))
    conventional = simulate_sticks_arrays(*simulation_cell(record, "as_parsed", 0.1), 1.54184, (5.0, 90.0))
    np.testing.assert_allclose(primitive[0], conventional[0], atol=1e-6)
    np.testing.assert_allclose(primitive[1], conventional[1], atol=1e-3)


def test_same_inputs_give_identical_arrays_whatever_the_sharding(table, tmp_path):
    first, _ = build(table, tmp_path / "a", n_shards=1)
    second, _ = build(table, tmp_path / "b", n_shards=4, threads=2)
    for name in ("intensity", "stick_offsets", "stick_two_theta_deg", "stick_intensity", "material_id",
                 "space_group", *SUPERCLASSES):
        np.testing.assert_array_equal(first[name][:], second[name][:])


def test_pymatgen_engine_builds_the_same_bank(table, tmp_path):
    fast, _ = build(table.head(6), tmp_path / "fast", n_shards=1)
    reference, _ = build(table.head(6), tmp_path / "pmg", n_shards=1, simulation=Simulation(engine="pymatgen"))
    np.testing.assert_allclose(fast["stick_two_theta_deg"][:], reference["stick_two_theta_deg"][:], atol=1e-6)
    np.testing.assert_allclose(fast["stick_intensity"][:], reference["stick_intensity"][:], atol=1e-3)


def test_shards_that_do_not_match_the_table_are_refused(table, tmp_path):
    path = tmp_path / "0.npz"
    simulate_shard(table.head(3), range(0, 3), path, simulation=Simulation(), grid=GRID, progress=False)
    with pytest.raises(ValueError, match="do not cover"):
        assemble_bank(table, [path], tmp_path / "b.zarr", tmp_path / "f.csv", grid=GRID, render_rule="max",
                      chunk_rows=4, attributes={}, progress=False)
    assert not (tmp_path / "b.zarr").exists()
