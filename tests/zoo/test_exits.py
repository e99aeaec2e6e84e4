"""The exit-code table and the shutdown policy every command runs under."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from zoo.exits import (DiskFull, ExitCode, OutputDirError, UserCodeExit, disk_full, exit_for,
                       raise_if_exhausted, require_writable_dir, run_command)


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


# --- exit_for: the one mapping from exceptions to the table ---------------------------

def _protobuf_error() -> BaseException:
    from google.protobuf.message import EncodeError

    return EncodeError("Failed to serialize proto")


@pytest.mark.parametrize("exc, words", [
    (MemoryError(), "out of memory (MemoryError)"),
    (RuntimeError("std::bad_alloc"), "out of memory"),
    (OSError(errno.ENOSPC, "No space left on device"), "no space left on device"),
    (OSError("983040 requested and 6112 written"), "no space left on device"),  # NumPy's tofile
    (RuntimeError("wrapped: [Errno 28] No space left on device"), "no space left on device"),
    (_protobuf_error(), "protobuf EncodeError: Failed to serialize proto"),
    (UserCodeExit("model file x.py: importing it called sys.exit(5)"), "called sys.exit(5)"),
    (ValueError("--threads must be positive"), "--threads must be positive"),
    (OSError(errno.EACCES, "Permission denied", "/root/x"), "/root/x: Permission denied"),
])
def test_exit_for_maps_each_listed_exception_to_bad_input(exc, words):
    code, line = exit_for(exc)
    assert code == ExitCode.BAD_INPUT and words in line and "\n" not in line


def test_a_disk_full_error_wrapped_in_another_is_still_a_full_disk():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("the converter failed") from inner
    except RuntimeError as outer:
        assert disk_full(outer)
        with pytest.raises(DiskFull, match="no space left on device"):
            raise_if_exhausted(outer)


def test_a_bug_is_not_mapped_and_keeps_its_traceback():
    assert exit_for(RuntimeError("a bug")) is None
    assert exit_for(AssertionError()) is None
    raise_if_exhausted(RuntimeError("a converter's own failure"))  # returns: not exhausted
    raise_if_exhausted(MemoryError(), memory=False)  # a row may record running out


@pytest.mark.parametrize("exc", [MemoryError(), OSError(errno.ENOSPC, "No space left on device"),
                                 _protobuf_error()], ids=["memory", "enospc", "protobuf"])
def test_every_subcommand_goes_through_exit_for(exc, capsys):
    """Each command of ``modelzoo`` (all three packages), its body raising one of the listed
    exceptions: one ``error:`` line and exit 2, never a traceback."""
    from bench.cli import all_commands
    from zoo.cli import Command, run_cli

    commands = all_commands()
    assert {"convert", "parity", "sweep", "bench", "accuracy", "ship", "transfer"} <= {
        c.name for c in commands}
    for cmd in commands:
        def boom(_args, exc=exc):
            raise exc
        fake = Command(cmd.name, cmd.help, cmd.add_arguments, boom)
        argv = [cmd.name, *REQUIRED_ARGS.get(cmd.name, ())]
        assert run_cli("modelzoo", "", [fake], argv) == ExitCode.BAD_INPUT, cmd.name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), (cmd.name, err)


REQUIRED_ARGS = {"report": ("raw.jsonl",), "compare": ("a.jsonl", "b.jsonl"),
                 "parity-time": ("squeezenet1_1",)}


def test_sigterm_exits_at_once_past_a_slow_interpreter_shutdown():
    """After the cleanup and the one line, ``exit_process`` skips the interpreter's shutdown
    (here an atexit hook that would take two minutes, as collecting a large TensorFlow graph
    did): a scheduler's 30 s grace period is never reached."""
    code = textwrap.dedent("""
        import atexit, os, signal, time
        from zoo.exits import exit_process, run_command
        atexit.register(time.sleep, 120)
        def body():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            return 0
        exit_process(run_command("prog", body))
    """)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=100)
    assert proc.returncode == 143 and time.monotonic() - t0 < 30
    assert proc.stderr.strip().endswith("terminated (SIGTERM); unfinished output removed, "
                                        "worker processes stopped")


def test_a_pseudo_file_system_is_refused_before_any_work():
    """``/proc`` passes permission checks for root, yet no file can be created there."""
    with pytest.raises(OutputDirError, match="cannot create a file in /proc"):
        require_writable_dir(Path("/proc/x"), "--out")
