"""Synthetic source: every space group generated, verified by spglib, and deterministic."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest
from pymatgen.core import Structure

from xrdbench.errors import ConfigError, SourceError
from xrdbench.sources import synthetic
from xrdbench.sources.manifest import MANIFEST_COLUMNS
from xrdbench.symmetry.detect import space_group_number

ALL = list(range(1, 231))
SAMPLE = [1, 2, 4, 14, 15, 19, 62, 70, 89, 123, 139, 142, 146, 148, 160, 167, 176, 191, 194, 221, 225, 230]


def _fetch(tmp_path_factory, name: str, threads: int = 1, **options) -> tuple[list[dict], Path]:
    source_dir = tmp_path_factory.mktemp(name)
    options = {"per_space_group": 1, "seed": 0, **options}
    return synthetic.fetch(options, source_dir, threads=threads, progress=False), source_dir


def _file_digests(rows: list[dict], source_dir: Path) -> dict[str, str]:
    return {row["id"]: hashlib.sha256((source_dir / row["path"]).read_bytes()).hexdigest() for row in rows}


@pytest.fixture(scope="module")
def all_groups(tmp_path_factory):
    return _fetch(tmp_path_factory, "all")


def test_every_space_group_is_written_once_in_order(all_groups):
    rows, source_dir = all_groups
    assert [row["id"] for row in rows] == [f"syn-{g:03d}-0000" for g in ALL]
    for row in rows:
        assert set(row) == set(MANIFEST_COLUMNS)
        assert row["source"] == "synthetic"
        assert (source_dir / row["path"]).is_file()
        assert 0 < row["n_sites"] <= 192 and row["volume"] > 0


def test_cif_on_disk_has_the_requested_space_group(all_groups):
    rows, source_dir = all_groups
    symprec = synthetic.DEFAULTS["verify_symprec"]
    for row, group in zip(rows, ALL, strict=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_file(source_dir / row["path"])
        assert space_group_number(structure, symprec=symprec) == group, row["id"]
        assert space_group_number(structure, symprec=1e-3) == group, row["id"]


def test_provenance_records_the_draw(all_groups):
    rows, _ = all_groups
    for row, group in zip(rows, ALL, strict=True):
        provenance = json.loads(row["provenance"])
        assert provenance["space_group"] == group and provenance["seed"] == 0 and provenance["index"] == 0
        assert 0 <= provenance["attempt"] < synthetic.DEFAULTS["max_attempts"]
        assert sum(provenance["composition"].values()) == row["n_sites"]
        assert set(provenance["composition"]) == set(provenance["wyckoff"])
        assert set(provenance["composition"]) <= set(synthetic.DEFAULT_ELEMENTS)


def test_same_seed_is_byte_identical_whatever_the_threads(all_groups, tmp_path_factory):
    rows, source_dir = all_groups
    again, again_dir = _fetch(tmp_path_factory, "again", threads=2)
    assert again == rows
    assert _file_digests(again, again_dir) == _file_digests(rows, source_dir)
    assert _file_digests(rows, source_dir) == {row["id"]: row["sha256"] for row in rows}


def test_other_seed_gives_other_structures(all_groups, tmp_path_factory):
    rows, _ = all_groups
    by_id = {row["id"]: row for row in rows}
    other, _ = _fetch(tmp_path_factory, "other", seed=1, space_groups=SAMPLE)
    assert [row["id"] for row in other] == [f"syn-{g:03d}-0000" for g in SAMPLE]
    assert all(row["sha256"] != by_id[row["id"]]["sha256"] for row in other)


def test_per_space_group_gives_distinct_structures(tmp_path_factory):
    rows, _ = _fetch(tmp_path_factory, "three", per_space_group=3, space_groups=[225, 14, 1])
    assert [row["id"] for row in rows] == [f"syn-{g:03d}-{i:04d}" for g in (1, 14, 225) for i in range(3)]
    assert len({row["sha256"] for row in rows}) == len(rows)


def test_elements_and_atom_budget_are_respected(tmp_path_factory):
    rows, _ = _fetch(tmp_path_factory, "small", space_groups=SAMPLE, elements=["Na", "Cl", "O"],
                     max_species=2, max_atoms=12)
    for row in rows:
        provenance = json.loads(row["provenance"])
        assert set(provenance["composition"]) <= {"Na", "Cl", "O"} and len(provenance["composition"]) <= 2
        assert row["n_sites"] <= 12 * 2 ** (provenance["attempt"] // synthetic.DOUBLE_BUDGET_EVERY)


def test_exhausted_attempts_name_the_space_group(tmp_path):
    # F432 has no orbit arrangement under 96 atoms without the extra symmetry of Fm-3m.
    with pytest.raises(SourceError, match="space group 209"):
        synthetic.fetch({"space_groups": [209], "per_space_group": 1, "max_attempts": 3}, tmp_path,
                        progress=False)


@pytest.mark.parametrize(("key", "value"), [
    ("space_groups", [231]),
    ("space_groups", [0]),
    ("space_groups", [1, 1]),
    ("space_groups", []),
    ("per_space_group", 0),
    ("seed", -1),
    ("elements", ["Na", "Xx"]),
    ("elements", []),
    ("max_species", 0),
    ("max_atoms", 0),
    ("max_attempts", 0),
    ("verify_symprec", 0.0),
    ("colour", "red"),
])
def test_bad_option_names_its_key(tmp_path, key, value):
    with pytest.raises(ConfigError, match=f"sources\\.synthetic\\.{key}"):
        synthetic.fetch({key: value}, tmp_path, progress=False)


def test_max_species_beyond_the_pool_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="sources\\.synthetic\\.max_species"):
        synthetic.fetch({"elements": ["Na", "Cl"], "max_species": 3}, tmp_path, progress=False)
