"""CoRE MOF 2019 from the ``core-mof`` PyPI package, which ships the CIFs.

The package holds each set (``2019-ASR``: all solvent removed; ``2019-FSR``:
free solvent removed) as a catalogue CSV plus one ``.tar.xz`` of CIFs.
``CoRE_MOF.get_structure`` reopens and decompresses the whole archive on every
call (seconds each), so this module reads the catalogues to choose what to keep,
then streams each archive once and extracts only the chosen members.

A refcode is a catalogue ``filename`` without its ``_<Extension>`` suffix
(``ABAVIJ_clean`` → ``ABAVIJ``). A refcode is kept once, from the first set in
``sets`` that has it (ASR before FSR by default), and becomes the material id.

Options (``sources.coremof`` in config):

- ``sets``: the sets to read, in order of preference;
- ``max_structures``: how many refcodes to keep (``null``: all); the sample is
  deterministic: refcodes ranked by a hash of (seed, refcode), so a larger
  sample contains every smaller one;
- ``seed``: the sampling seed.
"""

from __future__ import annotations

import hashlib
import tarfile
from importlib import resources
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from xrdbench.errors import ConfigError, SourceError
from xrdbench.sources.manifest import row_from_cif

SOURCE = "coremof"
KNOWN_SETS = ("2019-ASR", "2019-FSR")


def _data_dir():
    import CoRE_MOF.data

    return resources.files(CoRE_MOF.data)


def catalogue(set_name: str) -> pd.DataFrame:
    """The set's catalogue: one row per CIF, with ``filename``, ``refcode`` and ``set``."""
    frame = pd.read_csv(_data_dir() / f"{set_name}.csv", usecols=["filename", "Extension"], dtype=str)
    suffix = "_" + frame["Extension"]
    if not all(name.endswith(end) for name, end in zip(frame["filename"], suffix)):
        raise SourceError(f"CoRE MOF {set_name}: catalogue filenames do not end in their Extension")
    frame["refcode"] = [name[: -len(end)] for name, end in zip(frame["filename"], suffix)]
    frame["set"] = set_name
    return frame[["filename", "refcode", "set"]]


def sample_rank(refcode: str, seed: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{refcode}".encode(), digest_size=8).digest(), "big")


def select_entries(sets: list[str], max_structures: int | None, seed: int) -> pd.DataFrame:
    """One catalogue row per refcode (first set wins), deterministically sampled."""
    unknown = [name for name in sets if name not in KNOWN_SETS]
    if unknown or not sets:
        raise ConfigError(f"sources.coremof.sets: expected a non-empty subset of {list(KNOWN_SETS)}, got {sets}")
    entries = pd.concat([catalogue(name) for name in sets], ignore_index=True)
    entries = entries.drop_duplicates("refcode", keep="first")
    entries["rank"] = [sample_rank(refcode, seed) for refcode in entries["refcode"]]
    entries = entries.sort_values(["rank", "refcode"]).head(max_structures if max_structures is not None else None)
    return entries.sort_values("refcode").reset_index(drop=True)


def _stream_members(set_name: str, wanted: set[str]):
    """Yield (member name, CIF bytes) for the wanted filenames, reading the archive once.

    Stops decompressing as soon as every wanted member has been seen.
    """
    archive = _data_dir() / f"{set_name}.tar.xz"
    remaining = set(wanted)
    with tarfile.open(archive, "r|xz") as tar:
        for member in tar:
            stem = member.name.rsplit("/", 1)[-1].removesuffix(".cif")
            if member.isfile() and member.size > 0 and stem in remaining:
                remaining.discard(stem)
                yield member.name, tar.extractfile(member).read()
                if not remaining:
                    return


def fetch(options: dict, source_dir: Path, *, threads: int = 1, cache_dir: Path | None = None,
          progress: bool = True) -> list[dict]:
    entries = select_entries(list(options["sets"]), options.get("max_structures"), int(options["seed"]))
    rows = []
    with tqdm(total=len(entries), desc="coremof", unit="cif", disable=not progress) as bar:
        for set_name, chosen in entries.groupby("set", sort=False):
            refcode_of = dict(zip(chosen["filename"], chosen["refcode"]))
            for member, cif_bytes in _stream_members(set_name, set(refcode_of)):
                stem = member.rsplit("/", 1)[-1].removesuffix(".cif")
                rows.append(row_from_cif(SOURCE, refcode_of.pop(stem), source_dir, cif_bytes,
                                         provenance=f"core-mof {set_name}:{member}"))
                bar.update()
            if refcode_of:
                raise SourceError(f"CoRE MOF {set_name}: catalogued but missing from the archive: "
                                  f"{sorted(refcode_of)[:5]}")
    return rows
