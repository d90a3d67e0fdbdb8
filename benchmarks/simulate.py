"""Throughput of the fast stick simulator against pymatgen's XRDCalculator, and their agreement.

Usage::

    python benchmarks/simulate.py --n-mof 40 --n-inorganic 200 --seed 0

Two samples, both fixed by ``--seed``: CoRE MOF 2019-ASR CIFs (names drawn from the
package's index, parsed before any timing) and small inorganic cells (pymatgen's bundled
example structures plus random ``Structure.from_spacegroup`` cells of at most 64 atoms).
Each engine runs its own pass over all structures (the fast engine ``--repeats`` times,
median reported; pymatgen once), on Cu Kα over 5–90°.
Prints structures/s per engine, the speed ratio, and the largest deviation in peak
position and scaled intensity. BLAS runs single-threaded by default, so the figures are
per core and comparable with one worker per core in the workflow.
"""

from __future__ import annotations

import argparse
import tarfile
import time
import warnings
from importlib import resources
from pathlib import Path

import numpy as np

WAVELENGTH_ANGSTROM = 1.54184
TWO_THETA_RANGE_DEG = (5.0, 90.0)


def sample_core_mofs(n: int, seed: int, max_atoms: int) -> list[tuple[str, object]]:
    """n parsed CoRE MOF 2019-ASR structures with at most max_atoms sites, drawn by seed."""
    import CoRE_MOF
    from pymatgen.core import Structure

    names = sorted(CoRE_MOF.list_structures("2019-ASR"))
    order = np.random.default_rng([seed, 1]).permutation(len(names))
    wanted = {f"{names[i]}.cif": rank for rank, i in enumerate(order)}
    # Draw 3n candidates so that unparsable and over-size cells can be skipped.
    candidates = {name for name, rank in wanted.items() if rank < 3 * n}
    parsed: dict[str, object] = {}
    archive = resources.files("CoRE_MOF") / "data" / "2019-ASR.tar.xz"
    with resources.as_file(archive) as path, tarfile.open(path, "r|xz") as tar:
        for member in tar:
            if member.name not in candidates:
                continue
            text = tar.extractfile(member).read().decode(errors="replace")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    structure = Structure.from_str(text, fmt="cif")
            except Exception:  # a bad CIF is skipped, as in the workflow
                continue
            if len(structure) <= max_atoms:
                parsed[member.name] = structure
    chosen = sorted(parsed, key=wanted.get)[:n]
    return [(name, parsed[name]) for name in chosen]


def sample_inorganic(n: int, seed: int, max_atoms: int = 64) -> list[tuple[str, object]]:
    """pymatgen's example inorganic structures, topped up with random symmetric cells."""
    from pymatgen.core import Lattice, Structure
    from pymatgen.symmetry.groups import SpaceGroup

    import pymatgen.util

    out = []
    for path in sorted((Path(pymatgen.util.__file__).parent / "structures").glob("*.json")):
        structure = Structure.from_file(path)
        if len(structure) <= max_atoms:
            out.append((path.stem, structure))
    elements = ["Li", "Na", "Mg", "Al", "Si", "P", "S", "K", "Ca", "Ti", "Fe", "Co", "Ni", "Cu", "Zn",
                "Ga", "Sr", "Zr", "Ag", "Sn", "Ba", "La", "W", "Pb", "O", "N", "F", "Cl", "Se"]
    i = 0
    while len(out) < n:
        rng = np.random.default_rng([i, seed, 2])
        i += 1
        number = int(rng.integers(1, 231))
        system = SpaceGroup.from_int_number(number).crystal_system
        a, b, c = rng.uniform(3.0, 11.0, 3)
        alpha, beta, gamma = rng.uniform(70.0, 110.0, 3)
        lattice = {
            "triclinic": lambda: Lattice.from_parameters(a, b, c, alpha, beta, gamma),
            "monoclinic": lambda: Lattice.monoclinic(a, b, c, beta),
            "orthorhombic": lambda: Lattice.orthorhombic(a, b, c),
            "tetragonal": lambda: Lattice.tetragonal(a, c),
            "trigonal": lambda: Lattice.hexagonal(a, c),
            "hexagonal": lambda: Lattice.hexagonal(a, c),
            "cubic": lambda: Lattice.cubic(a),
        }[system]()
        n_sites = int(rng.integers(1, 4))
        species = list(rng.choice(elements, n_sites, replace=False))
        coords = rng.uniform(0.0, 1.0, (n_sites, 3))
        # Some sites on special positions, as real cells have them.
        coords[rng.uniform(size=coords.shape) < 0.3] = 0.0
        try:
            structure = Structure.from_spacegroup(number, lattice, species, coords, tol=0.01)
        except Exception:
            continue
        if len(structure) <= max_atoms:
            out.append((f"sg{number}-{'-'.join(species)}", structure))
    return out[:n]


def _timed_pass(engine, structures) -> tuple[float, list]:
    results, start = [], time.perf_counter()
    for _, structure in structures:
        results.append(engine(structure, WAVELENGTH_ANGSTROM, TWO_THETA_RANGE_DEG))
    return time.perf_counter() - start, results


def compare(label: str, structures: list[tuple[str, object]], repeats: int) -> None:
    """Time each engine in its own pass over all structures (as a bank build runs), then compare."""
    from xrdbench.simulate import simulate_sticks, simulate_sticks_pymatgen

    simulate_sticks(structures[0][1])  # imports and first-call set-up outside the timing
    fast_times = []
    for _ in range(repeats):
        elapsed, fast_results = _timed_pass(simulate_sticks, structures)
        fast_times.append(elapsed)
    time_fast = float(np.median(fast_times))
    time_pymatgen, reference_results = _timed_pass(simulate_sticks_pymatgen, structures)

    max_position, max_intensity, count_mismatch = 0.0, 0.0, []
    for (name, _), fast, reference in zip(structures, fast_results, reference_results, strict=True):
        if len(fast[0]) != len(reference[0]):
            count_mismatch.append(name)
        elif len(fast[0]):
            max_position = max(max_position, float(np.abs(fast[0] - reference[0]).max()))
            max_intensity = max(max_intensity, float(np.abs(fast[1] - reference[1]).max()))
    n = len(structures)
    atoms = np.array([len(s) for _, s in structures])
    print(f"{label}: {n} structures, atoms median {np.median(atoms):.0f} (min {atoms.min()}, max {atoms.max()})")
    print(f"  fast      {n / time_fast:10.2f} structures/s  ({time_fast:8.3f} s, median of {repeats} passes)")
    print(f"  pymatgen  {n / time_pymatgen:10.2f} structures/s  ({time_pymatgen:8.3f} s, one pass)")
    print(f"  ratio     {time_pymatgen / time_fast:10.1f} x")
    print(f"  max |d two_theta| {max_position:.2e} deg, max |d intensity| {max_intensity:.2e} (0-100 scale), "
          f"peak-count mismatches {len(count_mismatch)} {count_mismatch[:5]}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-mof", type=int, default=40, help="CoRE MOF structures (0 to skip)")
    parser.add_argument("--n-inorganic", type=int, default=200, help="small inorganic cells (0 to skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-atoms", type=int, default=2000,
                        help="skip MOF cells larger than this (pymatgen needs minutes on 10k-atom cells)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of the fast engine (median reported)")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads for both engines; 0 leaves the library default")
    args = parser.parse_args(argv)

    if args.blas_threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.blas_threads, user_api="blas")
    print(f"seed {args.seed}, Cu Ka {WAVELENGTH_ANGSTROM} A, two_theta {TWO_THETA_RANGE_DEG} deg, "
          f"BLAS threads {args.blas_threads or 'default'}")
    if args.n_mof:
        start = time.perf_counter()
        mofs = sample_core_mofs(args.n_mof, args.seed, args.max_atoms)
        print(f"parsed {len(mofs)} CoRE MOF CIFs in {time.perf_counter() - start:.1f} s (not timed below)")
        compare("CoRE MOF 2019-ASR", mofs, args.repeats)
    if args.n_inorganic:
        compare("small inorganic cells", sample_inorganic(args.n_inorganic, args.seed), args.repeats)


if __name__ == "__main__":
    main()
