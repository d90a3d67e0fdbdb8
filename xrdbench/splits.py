"""Material-level train/val/test splits with no leakage between them.

Leakage in PXRD benchmarks comes from the same material appearing twice: the
same refcode in two CoRE MOF sets (removed at the source), or two entries that
are the same crystal (re-determinations, polymorph duplicates, supercells).
Here every material is put in a *duplicate group*: entries of the same reduced
formula that pymatgen's ``StructureMatcher`` finds equal share one group, and a
whole group always lands in one split.

Groups are ranked by a hash of (seed, group id), the smallest id of the group,
and cut at the configured fractions of the material count, so the assignment
is deterministic from the ids and the seed alone.
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pandas as pd
from pymatgen.analysis.structure_matcher import StructureMatcher

from xrdbench.errors import ConfigError
from xrdbench.parallel import ordered_map

SPLITS = ("train", "val", "test")


def _matched_groups(job: tuple[list[str], list[dict]]) -> list[list[str]]:
    """Partition same-formula entries (ids, records) into lists of mutually matching structures."""
    ids, records = job
    from xrdbench.structures import record_to_structure

    structures = [record_to_structure(record) for record in records]
    for structure, material_id in zip(structures, ids):
        structure.properties["material_id"] = material_id
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        groups = StructureMatcher().group_structures(structures)
    return [sorted(s.properties["material_id"] for s in group) for group in groups]


def duplicate_groups(table: pd.DataFrame, *, match_structures: bool = True, threads: int = 1,
                     progress: bool = True) -> pd.Series:
    """Map each material id to its duplicate-group id (the smallest id in the group).

    ``table`` is the labelled structures table (``id``, ``formula`` and the
    compact structure columns). Only entries sharing a reduced formula are
    compared, which keeps the matcher's cost near linear in practice.
    """
    group_of = {material_id: material_id for material_id in table["id"]}
    if not match_structures:
        return pd.Series(group_of, name="group")
    candidates = [frame for _, frame in table.groupby("formula", sort=True) if len(frame) > 1]
    jobs = [(list(frame["id"]), frame.to_dict("records")) for frame in candidates]
    for groups in ordered_map(_matched_groups, jobs, threads=threads, desc="matching duplicates", unit="formula",
                              progress=progress):
        for group in groups:
            for material_id in group:
                group_of[material_id] = group[0]
    return pd.Series(group_of, name="group")


def split_rank(group_id: str, seed: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{group_id}".encode(), digest_size=8).digest(), "big")


def check_fractions(fractions: dict[str, float]) -> None:
    if set(fractions) != set(SPLITS):
        raise ConfigError(f"splits.fractions: expected keys {list(SPLITS)}, got {sorted(fractions)}")
    if any(value < 0 for value in fractions.values()) or not np.isclose(sum(fractions.values()), 1.0):
        raise ConfigError(f"splits.fractions: must be non-negative and sum to 1, got {fractions}")


def assign_splits(groups: pd.Series, fractions: dict[str, float], seed: int) -> pd.Series:
    """Assign each material (index of ``groups``) a split, keeping duplicate groups together.

    Groups are ordered by their hash rank and filled into train, then val,
    then test, until each holds its fraction of the materials.
    """
    check_fractions(fractions)
    sizes = groups.value_counts()
    order = sorted(sizes.index, key=lambda group: (split_rank(group, seed), group))
    bounds = np.cumsum([fractions[name] for name in SPLITS]) * len(groups)
    split_of_group, filled = {}, 0
    for group in order:
        # A group goes where its first member would fall, so rounding never starves a split.
        position = filled + 0.5
        split_of_group[group] = SPLITS[min(int(np.searchsorted(bounds, position, side="left")), 2)]
        filled += int(sizes[group])
    return groups.map(split_of_group).rename("split")


def balanced_subset(frame: pd.DataFrame, n_per_group: int, by: str = "space_group") -> pd.Series:
    """Boolean mask: the first ``n_per_group`` rows (in id order) of each class having at least that many.

    This is MOF-Balanced: classes with fewer than ``n_per_group`` members are dropped entirely.
    """
    ordered = frame.sort_values("id", kind="stable")
    rank = ordered.groupby(by, sort=False).cumcount()
    counts = ordered.groupby(by, sort=False)[by].transform("size")
    keep = (rank < n_per_group) & (counts >= n_per_group)
    return keep.reindex(frame.index)


def in_library_subset(frame: pd.DataFrame, seed: int) -> pd.Series:
    """Boolean mask over training materials, as many as the test (out-of-library) split, drawn once.

    The multi-phase benchmark evaluates in-library on this subset and
    out-of-library on the test split, whose materials are absent from training.
    """
    train_ids = sorted(frame.loc[frame["split"] == "train", "id"], key=lambda i: (split_rank(i, seed + 1), i))
    chosen = set(train_ids[: int((frame["split"] == "test").sum())])
    return frame["id"].isin(chosen)


def build_splits(table: pd.DataFrame, *, fractions: dict[str, float], seed: int, match_duplicates: bool = True,
                 balanced_per_group: int = 10, threads: int = 1, progress: bool = True) -> pd.DataFrame:
    """The split table: ``id``, ``group``, ``split``, ``space_group``, ``balanced``, ``in_library``."""
    if table["id"].duplicated().any():
        raise ValueError("structures table has duplicate material ids")
    groups = duplicate_groups(table, match_structures=match_duplicates, threads=threads, progress=progress)
    frame = pd.DataFrame({"id": table["id"].to_numpy(), "space_group": table["space_group"].to_numpy()})
    frame["group"] = frame["id"].map(groups)
    frame["split"] = frame["id"].map(assign_splits(groups, fractions, seed))
    frame["balanced"] = False
    for name in SPLITS:
        rows = frame["split"] == name
        frame.loc[rows, "balanced"] = balanced_subset(frame.loc[rows], balanced_per_group)
    frame["in_library"] = in_library_subset(frame, seed)
    return frame.sort_values("id", kind="stable").reset_index(drop=True)[
        ["id", "group", "split", "space_group", "balanced", "in_library"]]
