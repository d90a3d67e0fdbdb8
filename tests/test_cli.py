import subprocess
import sys

import pytest

from xrdbench.cli import main


def test_help_lists_the_stage_subcommands():
    result = subprocess.run([sys.executable, "-m", "xrdbench.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("fetch", "label", "split"):
        assert command in result.stdout


def test_bad_options_json_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["split", "--structures", "x.parquet", "--out", str(tmp_path / "o"), "--options", "{nope"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--options" in err and "not valid JSON" in err


def test_config_errors_exit_2_with_the_key(tmp_path, capsys):
    code = main(["fetch", "local", "--manifest", str(tmp_path / "m.parquet"), "--options", '{"path": null}'])
    assert code == 2
    assert "sources.local.path" in capsys.readouterr().err
