"""Compact structure records: exact round trips, including through parquet."""

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Species, Structure

from xrdbench.structures import RECORD_COLUMNS, record_to_structure, structure_to_record


@pytest.fixture
def ordered():
    return Structure(Lattice.from_parameters(5.1, 6.3, 7.2, 81.0, 75.0, 68.0),
                     ["Si", "O", "O"], [[0.1, 0.2, 0.3], [0.45, 0.05, 0.7], [0.9, 0.6, 0.15]])


@pytest.fixture
def partial():
    # A shared Na/K site, a half-vacant O site and an oxidation state that must be stripped.
    return Structure(Lattice.cubic(5.64),
                     [{"Na": 0.7, "K": 0.3}, {Species("Cl", -1): 1.0}, {"O": 0.5}],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]])


def assert_same_structure(actual: Structure, expected: Structure):
    np.testing.assert_array_equal(actual.lattice.matrix, expected.lattice.matrix)
    np.testing.assert_array_equal(actual.frac_coords, expected.frac_coords)
    assert [site.species.as_dict() for site in actual] == [
        site.species.element_composition.as_dict() for site in expected]


def test_record_layout(partial):
    record = structure_to_record(partial)
    assert tuple(record) == RECORD_COLUMNS
    assert len(record["lattice_matrix"]) == 9
    assert record["site_index"] == [0, 0, 1, 2]
    assert record["site_species"] == ["Na", "K", "Cl", "O"]
    assert record["site_occupancy"] == [0.7, 0.3, 1.0, 0.5]
    assert len(record["site_frac_coords"]) == 3 * 4


@pytest.mark.parametrize("name", ["ordered", "partial"])
def test_round_trip(name, request):
    structure = request.getfixturevalue(name)
    assert_same_structure(record_to_structure(structure_to_record(structure)), structure)


def test_round_trip_through_parquet(ordered, partial, tmp_path):
    frame = pd.DataFrame([structure_to_record(s) for s in (ordered, partial)])
    frame.insert(0, "id", ["ordered", "partial"])
    frame.to_parquet(tmp_path / "records.parquet", index=False)
    back = pd.read_parquet(tmp_path / "records.parquet")
    for (_, row), expected in zip(back.iterrows(), (ordered, partial)):
        assert_same_structure(record_to_structure(row), expected)
