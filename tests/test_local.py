import pytest

from xrdbench.errors import ConfigError, SourceError
from xrdbench.sources import fetch_source


def test_local_directory_ids_and_bytes(tmp_path, rocksalt):
    export = tmp_path / "export"
    (export / "batch1").mkdir(parents=True)
    rocksalt.to(filename=str(export / "NaCl.cif"))
    rocksalt.to(filename=str(export / "batch1" / "NaCl.cif"))
    (export / "notes.txt").write_text("not a cif")
    manifest = fetch_source("local", {"path": str(export), "pattern": "**/*.cif"},
                            tmp_path / "out" / "manifest.parquet", progress=False)
    assert sorted(manifest["id"]) == ["NaCl", "batch1__NaCl"]
    for row in manifest.itertuples():
        assert (tmp_path / "out" / row.path).read_bytes() == (export / row.provenance.split("export/")[1]).read_bytes()
        assert row.formula == "NaCl" and row.n_sites == 8


def test_missing_directory_names_the_path(tmp_path):
    with pytest.raises(SourceError, match="nowhere"):
        fetch_source("local", {"path": str(tmp_path / "nowhere")}, tmp_path / "m.parquet", progress=False)


def test_unset_path_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="sources.local.path"):
        fetch_source("local", {"path": None}, tmp_path / "m.parquet", progress=False)


def test_empty_directory_is_an_error(tmp_path):
    with pytest.raises(SourceError, match="no file matches"):
        fetch_source("local", {"path": str(tmp_path)}, tmp_path / "out" / "m.parquet", progress=False)
