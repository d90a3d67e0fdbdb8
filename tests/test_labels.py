"""The labels stage on real CIF files, good and malformed (tests/data/cifs/)."""

from pathlib import Path

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from xrdbench.errors import ConfigError
from xrdbench.sources.manifest import MANIFEST_COLUMNS, manifest_frame
from xrdbench.structures import RECORD_COLUMNS, record_to_structure
from xrdbench.symmetry import SUPERCLASSES, label_manifest
from xrdbench.symmetry.detect import space_group_number
from xrdbench.symmetry.labels import order_structure, read_cif_structure, write_labels

DATA = Path(__file__).parent / "data"
GOOD = {"nacl_rocksalt": 225, "zno_wurtzite": 186, "triclinic_p-1": 2}
BAD = {
    "empty": "unreadable",
    "missing": "unreadable",  # no file on disk
    "truncated": "unparseable",
    "garbage_cell": "unparseable",
    "garbage_loop": "unparseable",
    "partial_occupancy": "partial_occupancy",
    "nacl_supercell_p1": "too_many_sites",  # 64 sites > MAX_SITES
    "overlapping_atoms": "symmetry_undetermined",
}
MAX_SITES = 50


def make_manifest(ids) -> pd.DataFrame:
    return manifest_frame([dict(id=i, source="test", formula=None, n_sites=None, volume=None, sha256="",
                                path=f"cifs/{i}.cif", provenance="tests/data") for i in ids])


def label(ids, **kwargs):
    kwargs = dict(max_sites=MAX_SITES, progress=False) | kwargs
    return label_manifest(make_manifest(ids), DATA, **kwargs)


@pytest.fixture(scope="module")
def labelled():
    return label([*GOOD, *BAD])


def test_good_cifs_get_their_space_group(labelled):
    structures, _ = labelled
    assert dict(zip(structures["id"], structures["space_group"])) == GOOD


def test_each_bad_cif_is_rejected_with_its_reason(labelled):
    _, rejected = labelled
    assert list(rejected.columns) == ["id", "path", "reason", "detail"]
    assert dict(zip(rejected["id"], rejected["reason"])) == BAD
    assert rejected["id"].tolist() == sorted(BAD)  # manifest order (manifests are sorted by id)
    assert rejected["detail"].str.len().gt(0).all()


def test_unparseable_detail_keeps_pymatgen_warnings(labelled):
    detail = labelled[1].set_index("id").loc["garbage_cell", "detail"]
    assert "could not convert string to float: 'five'" in detail


@pytest.mark.filterwarnings("ignore::DeprecationWarning:spglib")
def test_overlapping_atoms_really_defeat_spglib():
    structure = read_cif_structure(DATA / "cifs" / "overlapping_atoms.cif")
    assert space_group_number(structure, symprec=0.1) is None
    # The atoms are 0.02 Å apart: a tolerance below that separates them again.
    assert space_group_number(structure, symprec=0.01) is not None


def test_accepted_rows_carry_manifest_superclasses_and_record(labelled):
    structures, _ = labelled
    assert list(structures.columns) == [*MANIFEST_COLUMNS, "space_group", *SUPERCLASSES, *RECORD_COLUMNS]
    nacl = structures.set_index("id").loc["nacl_rocksalt"]
    assert (nacl["formula"], nacl["n_sites"]) == ("NaCl", 8)
    assert nacl["volume"] == pytest.approx(5.64**3)
    assert (nacl["crystal_system"], nacl["bravais_lattice"], nacl["laue_class"]) == ("cubic", "cF", "m-3m")
    assert structures.set_index("id").loc["zno_wurtzite", "crystal_system"] == "hexagonal"
    assert len(record_to_structure(nacl)) == 8


def test_threads_do_not_change_the_result(labelled):
    structures, rejected = label([*GOOD, *BAD], threads=2)
    pd.testing.assert_frame_equal(structures, labelled[0])
    pd.testing.assert_frame_equal(rejected, labelled[1])


def test_order_policy_keeps_majority_species_of_sites_at_least_half_full():
    structures, rejected = label(["partial_occupancy"], occupancy="order")
    assert rejected.empty
    row = structures.iloc[0]
    # Na0.7K0.3 -> Na; Cl stays; O at 30 % occupancy is dropped.
    assert (row["formula"], row["n_sites"], row["space_group"]) == ("NaCl", 8, 225)
    assert set(row["site_species"]) == {"Na", "Cl"}
    assert set(row["site_occupancy"]) == {1.0}


def test_keep_policy_keeps_fractional_occupancies():
    structures, _ = label(["partial_occupancy"], occupancy="keep")
    row = structures.iloc[0]
    assert (row["n_sites"], row["space_group"]) == (16, 225)
    occupancy = dict(zip(row["site_species"], row["site_occupancy"]))
    assert occupancy == pytest.approx({"Na": 0.7, "K": 0.3, "Cl": 1.0, "O": 0.3})


def test_max_sites_counts_sites_after_the_occupancy_policy():
    assert label(["partial_occupancy"], occupancy="keep", max_sites=10)[1]["reason"].tolist() == ["too_many_sites"]
    assert label(["partial_occupancy"], occupancy="order", max_sites=10)[1].empty


def test_order_structure_breaks_ties_by_symbol_and_drops_mostly_vacant_sites():
    structure = Structure(Lattice.cubic(4.0), [{"Na": 0.5, "K": 0.5}, {"O": 0.49}, {"Cl": 0.25, "Br": 0.25}],
                          [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0]])
    ordered = order_structure(structure)
    assert [site.species_string for site in ordered] == ["Na", "Cl"]


def test_unknown_occupancy_policy_names_the_config_key():
    with pytest.raises(ConfigError, match="labels.occupancy"):
        label(["nacl_rocksalt"], occupancy="average")


def test_write_labels(labelled, tmp_path):
    structures, rejected = labelled
    write_labels(structures, rejected, tmp_path / "s.parquet", tmp_path / "rejected.csv")
    back = pd.read_parquet(tmp_path / "s.parquet")
    assert back["id"].tolist() == structures["id"].tolist()
    assert record_to_structure(back.iloc[0]) == record_to_structure(structures.iloc[0])
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "rejected.csv"), rejected)
    write_labels(structures, rejected.iloc[:0], tmp_path / "s.parquet", tmp_path / "none.csv")
    assert (tmp_path / "none.csv").read_text().strip() == "id,path,reason,detail"
