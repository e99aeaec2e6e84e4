"""One command line: `modelzoo` and the `python -m` aliases run the same commands."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.cli import all_commands
from tests.conftest import run_cli

MODELZOO = Path(sys.executable).parent / "modelzoo"


def test_console_script_lists_every_command():
    proc = subprocess.run([str(MODELZOO), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = [c.name for c in all_commands()]
    assert names == ["convert", "parity", "parity-catalog", "sweep", "demo", "bench", "report", "compare",
                     "transfer", "accuracy", "ship", "keras-seed", "parity-time", "list"]
    for name in names:
        assert f"    {name}" in proc.stdout, name


def test_console_script_runs_a_command_with_the_exit_code_table():
    ok = subprocess.run([str(MODELZOO), "list", "squeeze*"], capture_output=True, text=True,
                        timeout=120)
    assert ok.returncode == 0 and "squeezenet1_1" in ok.stdout
    bad = subprocess.run([str(MODELZOO), "list", "nosuch*"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: no catalog model matches")


def test_python_m_aliases_name_themselves_and_their_subcommands():
    bench_help = run_cli("bench", "--help")
    assert bench_help.returncode == 0 and "transfer" in bench_help.stdout
    report_help = run_cli("bench", "report", "--help")
    assert report_help.stdout.startswith("usage: python -m bench report")
    latency_help = run_cli("bench", "--models", "x", "--help")  # the default command
    assert latency_help.stdout.startswith("usage: python -m bench latency")


def test_models_take_one_form_everywhere():
    from zoo.cli import expand_models

    assert expand_models(["squeezenet1_0,squeezenet1_1"], []) == ["squeezenet1_0",
                                                                   "squeezenet1_1"]
    assert expand_models(["squeeze*", "resnet18"], []) == ["squeezenet1_0", "squeezenet1_1",
                                                            "resnet18"]
    assert expand_models(None, ["alexnet"]) == ["alexnet"]
