"""The space-group superclass table, checked against International Tables counts."""

import subprocess
import sys

import pytest

from xrdbench.symmetry import SUPERCLASSES, space_group_table, superclass_index


@pytest.fixture(scope="module")
def table():
    return space_group_table()


def test_shape_and_index(table):
    assert table.shape[0] == 230
    assert list(table.index) == list(range(1, 231))
    assert set(SUPERCLASSES) <= set(table.columns)
    assert {"international_short", "hall_number", "centrosymmetric"} <= set(table.columns)


@pytest.mark.parametrize("column, count", [
    ("crystal_system", 7), ("lattice_system", 7), ("bravais_lattice", 14), ("centring", 6),
    ("point_group", 32), ("arithmetic_class", 73), ("laue_class", 11)])
def test_class_counts(table, column, count):
    assert table[column].nunique() == count


def test_space_groups_per_crystal_system(table):
    assert table["crystal_system"].value_counts().to_dict() == {
        "triclinic": 2, "monoclinic": 13, "orthorhombic": 59, "tetragonal": 68,
        "trigonal": 25, "hexagonal": 27, "cubic": 36}


def test_crystal_systems_are_contiguous_number_ranges(table):
    bounds = table.reset_index().groupby("crystal_system")["space_group"].agg(["min", "max"])
    assert bounds.loc["monoclinic"].tolist() == [3, 15]
    assert bounds.loc["trigonal"].tolist() == [143, 167]
    assert bounds.loc["cubic"].tolist() == [195, 230]


def test_bravais_lattice_set(table):
    assert set(table["bravais_lattice"]) == {
        "aP", "mP", "mC", "oP", "oC", "oI", "oF", "tP", "tI", "hP", "hR", "cP", "cF", "cI"}
    # The seven R groups of ITA, and nothing else, are rhombohedral.
    assert sorted(table.index[table["lattice_system"] == "rhombohedral"]) == [146, 148, 155, 160, 161, 166, 167]


@pytest.mark.parametrize("number, expected", [
    (225, dict(crystal_system="cubic", bravais_lattice="cF", point_group="m-3m",
               arithmetic_class="m-3mF", laue_class="m-3m", centrosymmetric=True, centring="F")),
    (166, dict(crystal_system="trigonal", lattice_system="rhombohedral", bravais_lattice="hR", laue_class="-3m")),
    (194, dict(crystal_system="hexagonal", lattice_system="hexagonal", bravais_lattice="hP", point_group="6/mmm")),
    (38, dict(centring="A", bravais_lattice="oC", point_group="mm2", laue_class="mmm", centrosymmetric=False)),
    (14, dict(crystal_system="monoclinic", bravais_lattice="mP", point_group="2/m", centrosymmetric=True)),
    (1, dict(crystal_system="triclinic", bravais_lattice="aP", laue_class="-1", centrosymmetric=False)),
    (143, dict(crystal_system="trigonal", lattice_system="hexagonal", bravais_lattice="hP")),
    (230, dict(bravais_lattice="cI", international_short="Ia-3d")),
])
def test_spot_checks(table, number, expected):
    assert table.loc[number, list(expected)].to_dict() == expected


def test_centrosymmetric_iff_point_group_is_its_laue_class(table):
    assert (table["centrosymmetric"] == (table["point_group"] == table["laue_class"])).all()
    assert table["centrosymmetric"].sum() == 92


def test_returns_a_copy(table):
    table.loc[1, "crystal_system"] = "changed"
    assert space_group_table().loc[1, "crystal_system"] == "triclinic"


def test_superclass_index_is_stable_and_dense():
    index = superclass_index("crystal_system")
    assert index == {"triclinic": 0, "monoclinic": 1, "orthorhombic": 2, "tetragonal": 3,
                     "trigonal": 4, "hexagonal": 5, "cubic": 6}
    for name in SUPERCLASSES:
        assert sorted(superclass_index(name).values()) == list(range(space_group_table()[name].nunique()))
    with pytest.raises(KeyError):
        superclass_index("space_group")


def test_cli_import_prints_shape():
    code = "from xrdbench.symmetry import space_group_table; print(space_group_table().shape)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "(230, 10)"
