"""`python -m converters` follows the exit-code table (zoo.exits) on every path."""
from __future__ import annotations

import pytest

from converters.__main__ import main
from converters.cli import catalog_status
from tests.conftest import REPO, run_cli
from zoo.entry import WeightsSource


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


USER_MODEL = "tests/fixtures/user_model.py:tiny_net"


def _one_error(proc) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    return errors[0]


def test_an_input_size_beyond_reason_is_bad_input_not_a_memory_error(tmp_path):
    proc = run_cli("converters", "convert", USER_MODEL, "--input-size", "100000",
                   "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "--input-size 100000: at most 4096 pixels" in _one_error(proc)


def test_an_output_folder_on_a_pseudo_file_system_fails_before_the_model_is_built(tmp_path):
    proc = run_cli("converters", "convert", "squeezenet1_1", "--weights", "random",
                   "--out", "/proc/modelzoo-out")
    assert proc.returncode == 2
    assert "cannot create a file in /proc" in _one_error(proc)
    assert "building the PyTorch model" not in proc.stderr


def test_nan_weights_are_refused_before_converting(tmp_path):
    import torch

    from tests.fixtures.user_model import tiny_net

    state = tiny_net().state_dict()
    state["block.0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    proc = run_cli("converters", "convert", USER_MODEL, "--weights", str(tmp_path / "nan.pth"),
                   "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    error = _one_error(proc)
    assert "block.0.weight holds 1 NaN and 0 Inf" in error and "nothing converted" in error
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("where", ["import", "factory"])
def test_a_model_file_that_calls_sys_exit_is_bad_input(tmp_path, where):
    model = tmp_path / "script.py"
    body = "import sys\nsys.exit(5)\ndef build():\n    pass\n" if where == "import" else \
        "import sys\ndef build():\n    sys.exit(5)\n"
    model.write_text(body)
    proc = run_cli("converters", "convert", f"{model}:build", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    error = _one_error(proc)
    assert "called sys.exit(5)" in error and ("script.py" in error), error


def test_a_factory_in_train_mode_is_converted_in_eval_mode_and_says_so():
    from zoo.build import build_model
    from zoo.sources.user import user_entry

    model, found = build_model(user_entry(USER_MODEL), weights="factory")
    assert not model.training
    assert "handed over in train mode (2 BatchNorm layers" in found.eval_note
    assert WeightsSource.from_json(found.to_json()).eval_note == found.eval_note


def test_a_factory_with_unseeded_random_init_builds_the_same_weights_twice():
    """Parity rebuilds the model in another process: a factory's random init is seeded."""
    import torch

    from zoo.sources.user import call_factory, load_factory

    builder = str(REPO / "tests/fixtures/user_model.py") + ":tiny_net"
    load_factory(builder)
    a, b = call_factory(builder, {}), call_factory(builder, {})
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
