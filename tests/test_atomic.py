import pytest

from xrdbench.atomic import atomic_path, write_bytes_atomic


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "table.bin"
    write_bytes_atomic(target, b"complete")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"complete"
    assert [p.name for p in tmp_path.iterdir()] == ["table.bin"]


def test_directories_are_replaced_whole(tmp_path):
    target = tmp_path / "store.zarr"
    for generation in ("old", "new"):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / generation).write_text(generation)
    assert [p.name for p in target.iterdir()] == ["new"]
