"""Synthetic source: random inorganic crystals made with pyxtal, for every space group.

Each structure is drawn from ``numpy.random.default_rng([index, space_group, attempt, seed])``:
its composition, its Wyckoff sites and pyxtal's own draws (lattice, coordinates)
all come from that one generator, so the output is byte-identical whatever the
number of worker processes or the order in which structures are made.

One attempt draws a few species from the element pool and gives each one or more
Wyckoff orbits of the requested group, so the atom counts are compatible with the
group by construction. Large orbits and orbits with free parameters are preferred:
a crystal built from small fixed special positions often has more symmetry than
asked for. pyxtal places atoms on exactly those orbits, and spglib must then find
the requested group in the result, at ``verify_symprec``. A failed
attempt is retried with a fresh draw; a group that exhausts ``max_attempts`` stops
the run with an error naming it, since every requested group must be represented.

The conventional cell (pyxtal's setting; hexagonal axes for R groups) is written, with ids
``syn-{space_group:03d}-{index:04d}`` (index from 0). Compositions are not charge-balanced.

Options (``sources.synthetic.<key>``):

- ``per_space_group`` (int, default 2): structures per space group.
- ``seed`` (int >= 0, default 0): root seed of every random draw.
- ``space_groups`` (list of int or null, default null): groups to generate; null is all of 1-230.
- ``elements`` (list of str, default ``DEFAULT_ELEMENTS``): pool of element symbols species are drawn from.
- ``max_species`` (int, default 3): most distinct elements in one structure.
- ``max_atoms`` (int, default 48): atom budget of the conventional cell. It doubles after every
  10 failed attempts, for the groups that nothing under it realizes: with 48, the five groups
  Fd-3, F432, F-43c, Fm-3c and Fd-3c, whose orbits under 96 atoms all have extra symmetry.
- ``max_attempts`` (int, default 50): draws per structure before the run fails.
- ``verify_symprec`` (float, default 0.1): spglib tolerance in Å for the check; a label that
  holds at 0.1 Å also holds at any tighter tolerance, so downstream relabelling agrees.
"""

from __future__ import annotations

import json
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
from pymatgen.core import Element, Structure

from xrdbench.errors import ConfigError, SourceError
from xrdbench.parallel import ordered_map
from xrdbench.sources.manifest import row_from_structure
from xrdbench.symmetry.detect import space_group_number

SOURCE = "synthetic"
ALL_SPACE_GROUPS = range(1, 231)

DEFAULT_ELEMENTS = (
    "Li", "Na", "K", "Rb", "Cs", "Be", "Mg", "Ca", "Sr", "Ba", "Sc", "Y", "La", "Ce",
    "Ti", "Zr", "Hf", "V", "Nb", "Ta", "Cr", "Mo", "W", "Mn", "Fe", "Co", "Ni", "Cu",
    "Ag", "Zn", "Cd", "B", "Al", "Ga", "In", "C", "Si", "Ge", "Sn", "Pb", "Bi",
    "N", "P", "As", "Sb", "O", "S", "Se", "Te", "F", "Cl", "Br", "I",
)

DEFAULTS = dict(per_space_group=2, seed=0, space_groups=None, elements=list(DEFAULT_ELEMENTS),
                max_species=3, max_atoms=48, max_attempts=50, verify_symprec=0.1)

FIXED_ORBIT_WEIGHT = 0.25  # relative to an orbit with free parameters, per atom
REUSABLE_DOF = 2  # points and lines (0-1 free parameters) take one orbit's atoms at most: reuse is slow to pack
DOUBLE_BUDGET_EVERY = 10  # failed attempts after which the atom budget doubles


def _key(name: str) -> str:
    return f"sources.{SOURCE}.{name}"


def _positive_int(options: dict, name: str, minimum: int = 1) -> int:
    value = options[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{_key(name)} must be an integer >= {minimum}, got {value!r}")
    return value


def resolve_options(options: dict | None) -> dict:
    """``options`` over ``DEFAULTS``, checked; a bad value raises ConfigError naming its key."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown option {_key(unknown[0])}; known: {sorted(DEFAULTS)}")
    resolved = {**DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    for name in ("per_space_group", "max_species", "max_atoms", "max_attempts"):
        _positive_int(resolved, name)
    _positive_int(resolved, "seed", minimum=0)

    groups = resolved["space_groups"]
    if groups is None:
        groups = list(ALL_SPACE_GROUPS)
    if not isinstance(groups, (list, tuple)) or not groups:
        raise ConfigError(f"{_key('space_groups')} must be null or a non-empty list, got {groups!r}")
    bad = [g for g in groups if isinstance(g, bool) or not isinstance(g, int) or g not in ALL_SPACE_GROUPS]
    if bad:
        raise ConfigError(f"{_key('space_groups')}: {bad[0]!r} is not a space-group number 1-230")
    if len(set(groups)) != len(groups):
        raise ConfigError(f"{_key('space_groups')} lists a group twice: {groups}")
    resolved["space_groups"] = sorted(groups)

    elements = resolved["elements"]
    if not isinstance(elements, (list, tuple)) or not elements or len(set(elements)) != len(elements):
        raise ConfigError(f"{_key('elements')} must be a non-empty list of distinct symbols, got {elements!r}")
    for symbol in elements:
        if not isinstance(symbol, str) or not Element.is_valid_symbol(symbol):
            raise ConfigError(f"{_key('elements')}: {symbol!r} is not an element symbol")
    resolved["elements"] = list(elements)
    if resolved["max_species"] > len(elements):
        raise ConfigError(f"{_key('max_species')}={resolved['max_species']} exceeds the "
                          f"{len(elements)} elements in {_key('elements')}")

    symprec = resolved["verify_symprec"]
    if isinstance(symprec, bool) or not isinstance(symprec, (int, float)) or not 0 < symprec <= 1:
        raise ConfigError(f"{_key('verify_symprec')} must be a tolerance in Å in (0, 1], got {symprec!r}")
    resolved["verify_symprec"] = float(symprec)
    return resolved


@lru_cache(maxsize=None)
def _orbits(space_group: int) -> tuple[tuple[str, int, int], ...]:
    """(label, multiplicity, free parameters) of each Wyckoff orbit, in pyxtal's conventional cell."""
    from pyxtal.symmetry import Group

    return tuple((wp.get_label(), wp.multiplicity, int(wp.get_dof())) for wp in Group(space_group))


def draw_composition(space_group: int, rng: np.random.Generator, elements: list[str],
                     max_species: int, budget: int) -> dict[str, list[str]]:
    """Species → Wyckoff orbit labels holding at most ``budget`` atoms.

    Each species gets one orbit, then up to as many again go to random species, while
    they fit. An orbit is drawn with probability proportional to its multiplicity,
    a quarter of that for a fixed one, so the atom counts are sums of the group's
    multiplicities and the structure rarely has more symmetry than the group. Only
    orbits with two or more free parameters are used more than once.
    """
    orbits = _orbits(space_group)
    n_species = int(rng.integers(1, max_species + 1))
    species = [str(s) for s in rng.choice(elements, size=n_species, replace=False)]
    n_orbits = n_species + int(rng.integers(0, n_species + 1))
    sites: dict[str, list[str]] = {s: [] for s in species}
    used: set[str] = set()
    for k in range(n_orbits):
        fits = [(label, mult, dof) for label, mult, dof in orbits
                if mult <= budget and (dof >= REUSABLE_DOF or label not in used)]
        if not fits:
            break
        weights = np.array([mult * (1.0 if dof else FIXED_ORBIT_WEIGHT) for _, mult, dof in fits])
        label, mult, _ = fits[rng.choice(len(fits), p=weights / weights.sum())]
        owner = species[k] if k < n_species else species[int(rng.integers(n_species))]
        sites[owner].append(label)
        budget -= mult
        used.add(label)
    return {s: labels for s, labels in sites.items() if labels}


def generate(space_group: int, index: int, options: dict) -> tuple[Structure, dict]:
    """One verified random crystal of ``space_group`` and its provenance; SourceError when none is found."""
    from pyxtal import pyxtal

    orbits = {label: mult for label, mult, _ in _orbits(space_group)}
    for attempt in range(options["max_attempts"]):
        rng = np.random.default_rng([index, space_group, attempt, options["seed"]])
        budget = options["max_atoms"] * 2 ** (attempt // DOUBLE_BUDGET_EVERY)
        sites = draw_composition(space_group, rng, options["elements"], options["max_species"], budget)
        species = list(sites)
        counts = [sum(orbits[label] for label in sites[s]) for s in species]
        crystal = pyxtal()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                crystal.from_random(3, space_group, species, counts, sites=[sites[s] for s in species],
                                    max_count=1, random_state=rng)
            structure = crystal.to_pymatgen()
        except Exception:  # noqa: BLE001 - pyxtal signals an impossible draw in many ways; draw again
            continue
        if space_group_number(structure, symprec=options["verify_symprec"]) != space_group:
            continue
        provenance = dict(space_group=space_group, index=index, attempt=attempt, seed=options["seed"],
                          composition=dict(zip(species, counts)), wyckoff=sites)
        return structure, provenance
    raise SourceError(f"synthetic: no crystal of space group {space_group} (index {index}) verified by spglib "
                      f"in {options['max_attempts']} attempts; raise {_key('max_attempts')} or "
                      f"{_key('max_atoms')}")


def structure_id(space_group: int, index: int) -> str:
    return f"syn-{space_group:03d}-{index:04d}"


def _make_row(task: tuple[int, int, dict, Path]) -> dict:
    space_group, index, options, source_dir = task
    structure, provenance = generate(space_group, index, options)
    return row_from_structure(SOURCE, structure_id(space_group, index), source_dir, structure,
                              json.dumps(provenance, sort_keys=True))


def fetch(options: dict, source_dir: Path, *, threads: int = 1, cache_dir: Path | None = None,
          progress: bool = True) -> list[dict]:
    """Generate, verify and write ``per_space_group`` crystals for each group; return manifest rows.

    Rows come in (space group, index) order whatever ``threads`` is. ``cache_dir``
    is unused: nothing is downloaded.
    """
    options = resolve_options(options)
    source_dir = Path(source_dir)
    tasks = [(group, index, options, source_dir) for group in options["space_groups"]
             for index in range(options["per_space_group"])]
    return ordered_map(_make_row, tasks, threads=threads, desc="synthetic", unit="structure", progress=progress)
