"""The exit-code table and the shutdown policy every command runs under."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from zoo.exits import ExitCode, OutputDirError, require_writable_dir, run_command


def test_exit_code_table():
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 130, 143]


def _run_child(body: str) -> subprocess.CompletedProcess:
    """A child process that runs ``body`` (a function body) as a command under run_command."""
    code = ("import os, signal, sys\nfrom zoo.exits import run_command\ndef body():\n"
            + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
            + '\nsys.exit(run_command("prog", body))\n')
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("sig, code, words", [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                              (signal.SIGINT, 130, "interrupted (SIGINT)")])
def test_signal_is_one_line_and_runs_cleanup(sig, code, words):
    proc = _run_child(f"""
        try:
            os.kill(os.getpid(), {int(sig)})
            import time; time.sleep(5)
        finally:
            print("cleanup ran")
        return 0
    """)
    assert proc.returncode == code
    assert "cleanup ran" in proc.stdout and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"prog: {words}; unfinished output removed, worker processes stopped"]


def test_file_system_error_is_one_line_exit_2():
    proc = _run_child("""
        open("/proc/no/such/dir/file", "w")
    """)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "error: /proc/no/such/dir/file: No such file or directory"


def test_the_previous_sigterm_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    assert run_command("prog", lambda: 3) == 3
    assert signal.getsignal(signal.SIGTERM) is before


def test_output_folder_checks(tmp_path):
    (tmp_path / "file").write_text("x")
    assert require_writable_dir(tmp_path / "new" / "dir") == tmp_path / "new" / "dir"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    with pytest.raises(OutputDirError, match="is a file, not a folder"):
        require_writable_dir(tmp_path / "file" / "sub", "--out")
    with pytest.raises(OutputDirError, match="it is a file"):
        require_writable_dir(tmp_path / "file")
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(OutputDirError, match="no write permission"):
            require_writable_dir(ro / "out")


def test_run_child_gives_the_child_sigterm_before_sigkill(tmp_path):
    """An interrupted parent stops its child gracefully, so the child can clean up."""
    marker, ready = tmp_path / "child-cleaned-up", tmp_path / "child-ready"
    child = (f"import signal, sys, time, pathlib\n"
             f"def bye(*_):\n    pathlib.Path({str(marker)!r}).write_text('x'); sys.exit(0)\n"
             f"signal.signal(signal.SIGTERM, bye)\npathlib.Path({str(ready)!r}).write_text('x')\n"
             f"time.sleep(60)\n")
    parent = (
        f"import os, signal, sys, threading, time, pathlib\n"
        f"from zoo.exits import run_child, run_command\n"
        f"def kill_me_when_ready():\n"
        f"    while not pathlib.Path({str(ready)!r}).exists(): time.sleep(0.05)\n"
        f"    os.kill(os.getpid(), signal.SIGTERM)\n"
        f"threading.Thread(target=kill_me_when_ready, daemon=True).start()\n"
        f"sys.exit(run_command('prog', lambda: run_child([sys.executable, '-c', {child!r}]).returncode))\n")
    proc = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 143, proc.stderr
    assert marker.exists()  # the child ran its SIGTERM handler rather than being SIGKILLed


def test_a_closed_pipe_ends_the_command_quietly():
    """`modelzoo list | head`: no BrokenPipeError traceback, exit 0."""
    code = ("import sys\nfrom zoo.exits import run_command\n"
            "def body():\n    for i in range(100000):\n        print('line', i)\n    return 0\n"
            "sys.exit(run_command('prog', body))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("line 0")
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 0 and stderr == ""
