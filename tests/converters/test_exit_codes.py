"""`python -m converters` follows the exit-code table (zoo.exits) on every path."""
from __future__ import annotations

from converters.__main__ import main
from converters.cli import catalog_status
from tests.conftest import run_cli


def test_unwritable_out_is_bad_input_in_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for cmd in (["convert", "squeezenet1_1"], ["parity", "squeezenet1_1"], ["demo"]):
        assert main([*cmd, "--weights", "random", "--out", str(tmp_path / "file" / "a")]
                    if cmd[0] != "demo" else [*cmd, "--out", str(tmp_path / "file")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "cannot write there" in err[0], err
    assert main(["parity-catalog", "--models", "squeezenet1_1", "--collect-only",
                 "--out", str(tmp_path / "a"), "--results", str(tmp_path / "file")]) == 2
    assert "--results" in capsys.readouterr().err


def test_bad_seed_and_directory_weights_are_one_line_through_the_cli(tmp_path):
    for weights, words in (("random:-1", "between 0 and"), (str(tmp_path), "is a directory")):
        proc = run_cli("converters", "convert", "squeezenet1_1", "--weights", weights,
                       "--out", str(tmp_path / "out"))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        errors = [ln for ln in proc.stderr.splitlines() if not ln.startswith("  ... ")]
        assert len(errors) == 1 and words in errors[0], errors  # besides step lines


def test_catalog_status():
    assert catalog_status(["pass", "pass"]) == 0
    assert catalog_status(["pass", "FAIL", "error"]) == 1  # a wrong number outranks a gap
    assert catalog_status(["pass", "error"]) == 3
    assert catalog_status([]) == 3
