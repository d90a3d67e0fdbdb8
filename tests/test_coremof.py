import hashlib

import CoRE_MOF
import pytest

from xrdbench.errors import ConfigError
from xrdbench.sources import coremof, fetch_source, read_manifest


def test_refcodes_strip_the_catalogue_extension():
    asr = coremof.catalogue("2019-ASR")
    row = asr.loc[asr["filename"] == "ACECIV_ion_b"].iloc[0]
    assert row["refcode"] == "ACECIV"
    assert all(name.startswith(refcode + "_") for name, refcode in zip(asr["filename"], asr["refcode"]))


def test_refcode_in_both_sets_is_kept_once_from_asr():
    entries = coremof.select_entries(["2019-ASR", "2019-FSR"], None, seed=0)
    assert entries["refcode"].is_unique
    both = set(coremof.catalogue("2019-ASR")["refcode"]) & set(coremof.catalogue("2019-FSR")["refcode"])
    assert len(both) > 1000  # the two sets overlap heavily: the dedupe is doing real work
    chosen = entries.set_index("refcode").loc[sorted(both)[:200], "set"]
    assert (chosen == "2019-ASR").all()
    fsr_only = set(coremof.catalogue("2019-FSR")["refcode"]) - set(coremof.catalogue("2019-ASR")["refcode"])
    assert (entries.set_index("refcode").loc[sorted(fsr_only), "set"] == "2019-FSR").all()


def test_sampling_is_deterministic_and_nested():
    small = coremof.select_entries(["2019-ASR", "2019-FSR"], 20, seed=3)
    again = coremof.select_entries(["2019-ASR", "2019-FSR"], 20, seed=3)
    large = coremof.select_entries(["2019-ASR", "2019-FSR"], 60, seed=3)
    other = coremof.select_entries(["2019-ASR", "2019-FSR"], 20, seed=4)
    assert list(small["refcode"]) == list(again["refcode"])
    assert set(small["refcode"]) < set(large["refcode"])
    assert set(small["refcode"]) != set(other["refcode"])


def test_unknown_set_is_a_config_error():
    with pytest.raises(ConfigError, match="sources.coremof.sets"):
        coremof.select_entries(["2017-XYZ"], 5, seed=0)


def test_fetch_writes_real_coremof_cifs(tmp_path):
    manifest = fetch_source("coremof", {"sets": ["2019-ASR", "2019-FSR"], "max_structures": 6, "seed": 0},
                            tmp_path / "coremof" / "manifest.parquet", progress=False)
    assert len(manifest) == 6
    assert read_manifest(tmp_path / "coremof" / "manifest.parquet").equals(manifest)
    catalogued = {name: set(coremof.catalogue(name)["refcode"]) for name in coremof.KNOWN_SETS}
    for row in manifest.itertuples():
        data = (tmp_path / "coremof" / row.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.sha256
        set_name = row.provenance.split()[1].split(":")[0]
        assert row.id in catalogued[set_name]
        assert row.formula and row.n_sites > 0 and row.volume > 0
    # Byte-identical to what the package itself serves for the same entry.
    first = manifest.iloc[0]
    set_name, member = first["provenance"].split()[1].split(":", 1)
    entry = member.rsplit("/", 1)[-1].removesuffix(".cif")
    assert CoRE_MOF.get_CIF_structure_data(set_name, entry) == (tmp_path / "coremof" / first["path"]).read_bytes()
