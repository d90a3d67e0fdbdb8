"""Pattern banks: the clean single-phase patterns of one source on one named grid.

A bank is built in two steps, so that simulation can be spread over many jobs
and an interrupted build redoes only what is missing:

1. :func:`simulate_shard` computes the stick lists of one contiguous range of
   the structures table and saves them, atomically, as one ``.npz`` shard.
   Snakemake runs one job per shard; a shard on disk is never recomputed.
2. :func:`assemble_bank` gathers the shards in order, leaves out structures that
   failed or have no peak in range (recording why in ``failed.csv``), creates
   every array of the zarr store, renders the sticks onto the grid in
   chunk-aligned row blocks, and renames the finished store into place.

Bank layout (``results/banks/{source}/{grid}.zarr``), N patterns, M sticks:

- ``intensity`` (N, L) float32, row-chunked: sticks binned onto the grid, 0–100;
- ``stick_offsets`` (N+1,) int64, ``stick_two_theta_deg`` (M,) float64,
  ``stick_intensity`` (M,) float64: the ragged stick lists (pattern i owns
  sticks ``offsets[i]:offsets[i+1]``), so any grid can be re-rendered without
  re-simulating;
- ``material_id`` (N,) str, ``space_group`` (N,) int16 and one str array per
  superclass, copied from the structures table;
- attributes: ``grid``, ``render_rule``, ``wavelength_angstrom``, ``engine``,
  ``cell``, ``config_hash``, ``versions``, ``structures_sha256``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import spglib
import zarr
from pymatgen.core import Element, Lattice, Structure
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from xrdbench.atomic import atomic_path, write_csv_atomic
from xrdbench.errors import ConfigError
from xrdbench.parallel import ordered_map
from xrdbench.provenance import config_hash, package_versions
from xrdbench.simulate.grids import Grid, render_stick_lists
from xrdbench.simulate.sticks import get_engine, simulate_sticks_arrays
from xrdbench.symmetry.detect import call_spglib
from xrdbench.symmetry.tables import SUPERCLASSES

CELLS = ("primitive", "as_parsed")
FAILED_COLUMNS = ["id", "reason", "detail"]


@dataclass(frozen=True)
class Simulation:
    """How sticks are computed: engine, wavelength (Å), the cell simulated and its symprec (Å)."""

    engine: str = "fast"
    wavelength_angstrom: float = 1.54184
    cell: str = "primitive"
    symprec: float = 0.1

    def __post_init__(self):
        get_engine(self.engine)
        if self.cell not in CELLS:
            raise ConfigError(f"simulate.cell must be one of {list(CELLS)}, got {self.cell!r}")


def shard_rows(n_rows: int, n_shards: int, shard: int) -> range:
    """Rows of the structures table that shard ``shard`` of ``n_shards`` simulates (contiguous)."""
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} is outside 0..{n_shards - 1}")
    return range(shard * n_rows // n_shards, (shard + 1) * n_rows // n_shards)


def simulation_cell(record: dict, cell: str, symprec: float):
    """(lattice (3,3) Å, fractional coords (n,3), element symbols, occupancies) to simulate.

    ``primitive`` reduces an ordered structure to spglib's standardized primitive
    cell (as the XRDecoupler authors did with symprec 0.1): fewer atoms, the same
    pattern. Disordered structures, which spglib cannot type, are simulated as parsed.
    """
    lattice = np.asarray(record["lattice_matrix"], dtype=np.float64).reshape(3, 3)
    frac = np.asarray(record["site_frac_coords"], dtype=np.float64).reshape(-1, 3)
    species = list(record["site_species"])
    occupancy = np.asarray(record["site_occupancy"], dtype=np.float64)
    ordered = len(set(record["site_index"])) == len(species) and np.all(occupancy == 1.0)
    if cell == "primitive" and ordered:
        numbers = [Element(symbol).Z for symbol in species]
        reduced = call_spglib(spglib.standardize_cell, (lattice, frac, numbers), to_primitive=True,
                              symprec=symprec)
        if reduced is not None:
            lattice, frac, numbers = reduced
            species = [Element.from_Z(int(z)).symbol for z in numbers]
            occupancy = np.ones(len(species))
    return lattice, frac, species, occupancy


def simulate_record(record: dict, simulation: Simulation, two_theta_range: tuple[float, float]):
    """Sticks (2θ in degrees, intensity 0–100) of one structures-table record."""
    lattice, frac, species, occupancy = simulation_cell(record, simulation.cell, simulation.symprec)
    if simulation.engine == "fast":
        return simulate_sticks_arrays(lattice, frac, species, occupancy, simulation.wavelength_angstrom,
                                      two_theta_range)
    sites = {}
    for index, symbol, amount, xyz in zip(record["site_index"], species, occupancy, frac):
        sites.setdefault(index, ({}, xyz))[0][symbol] = amount
    structure = Structure(Lattice(lattice), [s for s, _ in sites.values()], [x for _, x in sites.values()])
    return get_engine(simulation.engine)(structure, simulation.wavelength_angstrom, two_theta_range)


def _simulate_rows(batch: tuple[list[dict], Simulation, tuple[float, float]]) -> list:
    records, simulation, two_theta_range = batch
    results = []
    with threadpool_limits(1):  # one BLAS thread per worker process: the pool is the parallelism
        for record in records:
            try:
                two_theta, intensity = simulate_record(record, simulation, two_theta_range)
            except Exception as error:  # noqa: BLE001 - one bad structure never aborts a bank
                results.append(("simulation_failed", f"{type(error).__name__}: {error}", None, None))
                continue
            if len(two_theta) == 0 or not np.all(np.isfinite(intensity)):
                results.append(("no_peaks_in_range" if len(two_theta) == 0 else "non_finite",
                                f"{len(two_theta)} sticks in {two_theta_range}", None, None))
            else:
                results.append(("ok", "", two_theta, intensity))
    return results


def simulate_shard(table: pd.DataFrame, rows: range, path: str | Path, *, simulation: Simulation, grid: Grid,
                   threads: int = 1, progress: bool = True) -> None:
    """Simulate ``table.iloc[rows]`` and save the shard's sticks atomically to ``path`` (.npz)."""
    records = table.iloc[rows.start:rows.stop].to_dict("records")
    two_theta_range = (grid.two_theta_min_deg, grid.two_theta_max_deg)
    batches = [(records[i:i + 8], simulation, two_theta_range) for i in range(0, len(records), 8)]
    results = [result for batch in ordered_map(_simulate_rows, batches, threads=threads, unit="batch of 8",
                                                 desc=f"simulate {Path(path).name}", progress=progress)
               for result in batch]
    status = np.array([r[0] for r in results], dtype=str)
    lengths = [len(r[2]) if r[2] is not None else 0 for r in results]
    empty = np.empty(0, dtype=np.float64)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, material_id=np.array([r["id"] for r in records], dtype=str), status=status,
                     detail=np.array([r[1] for r in results], dtype=str),
                     offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                     two_theta_deg=np.concatenate([r[2] for r in results if r[2] is not None] or [empty]),
                     intensity=np.concatenate([r[3] for r in results if r[3] is not None] or [empty]))


def _gather(shard_paths: list[Path], expected_ids: np.ndarray):
    ids, status, detail, offsets, two_theta, intensity = [], [], [], [np.zeros(1, np.int64)], [], []
    for path in shard_paths:
        with np.load(path) as shard:
            ids.append(shard["material_id"])
            status.append(shard["status"])
            detail.append(shard["detail"])
            offsets.append(shard["offsets"][1:] + offsets[-1][-1])
            two_theta.append(shard["two_theta_deg"])
            intensity.append(shard["intensity"])
    ids = np.concatenate(ids)
    if not np.array_equal(ids, expected_ids):
        raise ValueError("the shards do not cover the structures table in order: rebuild them")
    return (ids, np.concatenate(status), np.concatenate(detail), np.concatenate(offsets),
            np.concatenate(two_theta), np.concatenate(intensity))


def write_strings(group: zarr.Group, name: str, values) -> None:
    """A variable-length UTF-8 string array (the zarr v3 string type other readers understand)."""
    array = group.create_array(name, shape=(len(values),), dtype=str)
    if len(values):
        array[:] = np.asarray(list(values), dtype=object)


def assemble_bank(table: pd.DataFrame, shard_paths: list[str | Path], bank_path: str | Path,
                  failed_path: str | Path, *, grid: Grid, render_rule: str, chunk_rows: int,
                  attributes: dict, threads: int = 1, progress: bool = True) -> pd.DataFrame:
    """Gather the shards into the zarr bank at ``bank_path`` (atomically); return the failures."""
    ids, status, detail, offsets, two_theta, intensity = _gather([Path(p) for p in shard_paths],
                                                                 table["id"].to_numpy(dtype=str))
    ok = status == "ok"
    failed = pd.DataFrame({"id": ids[~ok], "reason": status[~ok], "detail": detail[~ok]}, columns=FAILED_COLUMNS)
    keep = np.flatnonzero(ok)
    starts, stops = offsets[keep], offsets[keep + 1]
    kept_offsets = np.concatenate([[0], np.cumsum(stops - starts)]).astype(np.int64)
    picks = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops)] or [np.empty(0, np.int64)])
    two_theta, intensity = two_theta[picks], intensity[picks]
    kept = table.iloc[keep]
    n_rows = len(keep)

    with atomic_path(bank_path) as tmp:
        group = zarr.open_group(str(tmp), mode="w")
        patterns = group.create_array("intensity", shape=(n_rows, grid.n_bins), dtype="float32",
                                      chunks=(chunk_rows, grid.n_bins), fill_value=0.0)
        group.create_array("stick_offsets", data=kept_offsets)
        group.create_array("stick_two_theta_deg", data=two_theta.astype(np.float64))
        group.create_array("stick_intensity", data=intensity.astype(np.float64))
        write_strings(group, "material_id", kept["id"])
        group.create_array("space_group", data=kept["space_group"].to_numpy(dtype=np.int16))
        for name in SUPERCLASSES:
            write_strings(group, name, kept[name])
        group.attrs.update(dict(attributes, grid=asdict(grid), render_rule=render_rule,
                                n_failed=int(len(failed))))

        def write_block(start: int) -> None:
            stop = min(start + chunk_rows, n_rows)
            block_offsets = kept_offsets[start:stop + 1]
            lo, hi = block_offsets[0], block_offsets[-1]
            patterns[start:stop] = render_stick_lists(block_offsets - lo, two_theta[lo:hi], intensity[lo:hi],
                                                      grid, rule=render_rule)

        blocks = range(0, n_rows, chunk_rows)  # each block is whole chunks: writers never share one
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            list(tqdm(pool.map(write_block, blocks), total=len(blocks), desc="render bank", unit="chunk",
                      disable=not progress))
    write_csv_atomic(failed, failed_path)
    return failed


def bank_attributes(simulation: Simulation, section: dict, structures_sha256: str) -> dict:
    return dict(wavelength_angstrom=simulation.wavelength_angstrom, engine=simulation.engine,
                cell=simulation.cell, symprec=simulation.symprec, config_hash=config_hash(section),
                versions=package_versions(), structures_sha256=structures_sha256)
