"""Splits: material-level, deterministic, and no duplicate ever spans two splits."""

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from xrdbench.errors import ConfigError
from xrdbench.splits import assign_splits, balanced_subset, build_splits, check_fractions
from xrdbench.structures import structure_to_record

FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}
CATIONS = ["Li", "Na", "K", "Rb", "Cs", "Mg", "Ca", "Sr", "Ba", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Cd"]


def _row(material_id, structure, space_group):
    return dict(id=material_id, formula=structure.composition.reduced_formula, space_group=space_group,
                **structure_to_record(structure))


FCC = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])


def rocksalt(cation, anion="O", a=4.2):
    return Structure(Lattice.cubic(a), [cation] * 4 + [anion] * 4, np.vstack([FCC, FCC + 0.5]) % 1.0)


@pytest.fixture(scope="module")
def table():
    """32 distinct rocksalt oxides and sulfides, plus known duplicates of MgO and NaCl."""
    rows = [_row(f"{cation}{anion}-1", rocksalt(cation, anion), 225) for cation in CATIONS for anion in ("O", "S")]
    mgo = rocksalt("Mg")
    strained = mgo.copy()
    strained.apply_strain(0.01)
    perturbed = mgo * (2, 1, 1)
    perturbed.perturb(0.02, min_distance=0.0)
    rows += [_row("MgO-2-supercell", mgo * (1, 2, 2), 225), _row("MgO-3-strained", strained, 225),
             _row("MgO-4-perturbed", perturbed, 225)]
    rows += [_row("NaCl-a", rocksalt("Na", "Cl", 5.64), 225), _row("NaCl-b", rocksalt("Na", "Cl", 5.60), 225)]
    # Same formula, different structure: CsCl-type MgO must stay its own group.
    rows.append(_row("MgO-cscl", Structure(Lattice.cubic(2.6), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]), 221))
    return pd.DataFrame(rows)


def test_matched_structures_share_a_group_and_a_split(table):
    splits = build_splits(table, fractions=FRACTIONS, seed=0, progress=False).set_index("id")
    mgo = ["MgO-1", "MgO-2-supercell", "MgO-3-strained", "MgO-4-perturbed"]
    assert splits.loc[mgo, "group"].nunique() == 1
    assert splits.loc[mgo, "split"].nunique() == 1
    assert splits.loc[["NaCl-a", "NaCl-b"], "group"].nunique() == 1
    assert splits.loc["MgO-cscl", "group"] != splits.loc["MgO-1", "group"]


def test_no_id_or_group_in_two_splits(table):
    splits = build_splits(table, fractions=FRACTIONS, seed=1, progress=False)
    assert splits["id"].is_unique
    assert sorted(splits["id"]) == sorted(table["id"])
    assert (splits.groupby("group")["split"].nunique() == 1).all()
    assert set(splits["split"]) == {"train", "val", "test"}


def test_fractions_are_respected_up_to_group_granularity(table):
    splits = build_splits(table, fractions=FRACTIONS, seed=2, progress=False)
    counts = splits["split"].value_counts()
    largest_group = splits["group"].value_counts().max()
    for name, fraction in FRACTIONS.items():
        assert abs(counts[name] - fraction * len(splits)) <= largest_group


def test_deterministic_from_ids_and_seed(table):
    first = build_splits(table, fractions=FRACTIONS, seed=5, progress=False)
    shuffled = build_splits(table.sample(frac=1.0, random_state=3), fractions=FRACTIONS, seed=5, progress=False)
    parallel = build_splits(table, fractions=FRACTIONS, seed=5, threads=2, progress=False)
    other = build_splits(table, fractions=FRACTIONS, seed=6, progress=False)
    assert first.equals(shuffled)
    assert first.equals(parallel)
    assert not first["split"].equals(other["split"])


def test_without_matching_every_material_is_its_own_group(table):
    splits = build_splits(table, fractions=FRACTIONS, seed=0, match_duplicates=False, progress=False)
    assert (splits["group"] == splits["id"]).all()


def test_assign_splits_keeps_groups_whole():
    groups = pd.Series({f"m{i:03d}": f"g{i // 3:03d}" for i in range(300)})
    splits = assign_splits(groups, FRACTIONS, seed=0)
    per_group = splits.groupby(groups).nunique()
    assert (per_group == 1).all()
    assert abs((splits == "test").sum() - 60) <= 3


def test_balanced_subset_takes_the_first_n_and_drops_small_groups():
    frame = pd.DataFrame({"id": [f"m{i:02d}" for i in range(12)],
                          "space_group": [14] * 5 + [2] * 2 + [62] * 5})
    shuffled = frame.sample(frac=1.0, random_state=0)
    keep = balanced_subset(shuffled, 3)
    assert sorted(shuffled.loc[keep, "id"]) == ["m00", "m01", "m02", "m07", "m08", "m09"]


def test_in_library_subset_matches_test_size_and_lies_in_train(table):
    splits = build_splits(table, fractions=FRACTIONS, seed=0, progress=False)
    chosen = splits[splits["in_library"]]
    assert len(chosen) == (splits["split"] == "test").sum()
    assert (chosen["split"] == "train").all()


@pytest.mark.parametrize("fractions", [{"train": 0.9, "val": 0.2, "test": 0.1},
                                       {"train": 1.2, "val": -0.1, "test": -0.1},
                                       {"train": 1.0, "test": 0.0}])
def test_bad_fractions_name_the_key(fractions):
    with pytest.raises(ConfigError, match="splits.fractions"):
        check_fractions(fractions)
