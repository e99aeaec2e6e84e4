"""zoo.executors on tiny tasks (a `python -c` each, well under a second): the same results
from the local pool and a real local Ray cluster, bounded retries of dead workers and none
of real failures, the done-store, an interrupted driver's re-run, and Ray missing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zoo.executors import PYTHON, Task
from zoo.executors.base import MAX_RETRIES
from zoo.executors.done import DoneStore
from zoo.executors.driver import run_tasks
from zoo.executors.local import LocalExecutor
from zoo.env import THREAD_ENV_VARS
from zoo.executors.task import collect_stdout_json, share_of_cpus, task_env

REPO = Path(__file__).resolve().parents[2]

# Counts its runs in a file, prints one JSON record (with the thread setting it sees: Ray
# sets one in its workers that a local run has not), then exits with the given code; on
# its first run it may kill itself ("self") or the process that runs it ("parent": the
# Ray worker), as a crashed or OOM-killed worker would die.
SCRIPT = """
import json, os, signal, sys, time
runs, code, die, sleep = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
n = len(open(runs).read()) if os.path.exists(runs) else 0
open(runs, "a").write("x")
time.sleep(sleep)
if die == "always" or (die != "no" and n == 0):
    os.kill(os.getppid() if die == "parent" else os.getpid(), signal.SIGKILL)
print(json.dumps({"task": os.path.basename(runs), "value": 7 * code + 1,
                  "threads": os.environ.get("OMP_NUM_THREADS")}))
sys.exit(code)
"""


def task(tmp: Path, name: str, code: int = 0, die: str = "no", sleep: float = 0.0,
         fp: str = "v1") -> Task:
    return Task(key=f"tiny/{name}", argv=(PYTHON, "-c", SCRIPT, str(tmp / name), str(code),
                                          die, str(sleep)),
                fingerprint=fp, collect=collect_stdout_json)


def expected_threads(ex) -> str | None:
    """OMP_NUM_THREADS a shared task's process sees: the user's own setting, else the
    executor's share of the CPUs (None: the runtimes' default)."""
    if any(v in os.environ for v in THREAD_ENV_VARS):
        return os.environ.get("OMP_NUM_THREADS")
    return str(ex.threads) if ex.threads else None


def runs(tmp: Path, name: str) -> int:
    path = tmp / name
    return len(path.read_text()) if path.exists() else 0


@pytest.fixture(scope="module")
def ray_executor():
    pytest.importorskip("ray", reason="ray is in the dev extra (pip install -e '.[dev]')")
    from zoo.executors.ray_executor import RayExecutor

    executor = RayExecutor(jobs=2)  # a local 2-CPU cluster, started here
    yield executor
    executor.close()


def torch_default() -> int:
    """torch's own thread count in a fresh process with no thread variable set."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV_VARS}
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                         env=env, capture_output=True, text=True, check=True).stdout
    return int(out.strip())


def _summary(results) -> list[tuple]:
    return [(r.key, r.status, r.exit_code, r.records, r.error.split(":")[0]) for r in results]


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_results_and_real_failures_are_rows_not_retries(executor, tmp_path, request):
    ex = LocalExecutor(jobs=2) if executor == "local" else request.getfixturevalue("ray_executor")
    tasks = [task(tmp_path, f"t{code}", code=code) for code in (0, 1, 2, 3)]
    results = run_tasks(ex, tasks, done_root=None, show=False)
    assert [(r.key, r.status, r.exit_code) for r in results] == [
        ("tiny/t0", "ok", 0), ("tiny/t1", "failed", 1), ("tiny/t2", "failed", 2),
        ("tiny/t3", "failed", 3)]
    threads = expected_threads(ex)
    assert [r.records for r in results] == [
        [{"task": f"t{c}", "value": 7 * c + 1, "threads": threads}] for c in (0, 1, 2, 3)]
    assert [runs(tmp_path, f"t{c}") for c in (0, 1, 2, 3)] == [1, 1, 1, 1]  # none retried
    assert all(r.node.name and r.node.cpus >= 1 and r.seconds > 0 for r in results)


def test_local_and_ray_give_the_same_results(tmp_path, ray_executor):
    out = {}
    for name, ex in (("local", LocalExecutor(jobs=2)), ("ray", ray_executor)):
        (tmp_path / name).mkdir()
        tasks = [task(tmp_path / name, f"t{i}", code=i % 2) for i in range(5)]
        out[name] = _summary(run_tasks(ex, tasks, done_root=None, show=False))
    assert out["local"] == out["ray"] and len(out["ray"]) == 5


def test_local_dead_worker_is_retried_within_bound(tmp_path):
    ex = LocalExecutor(jobs=2)
    results = run_tasks(ex, [task(tmp_path, "once", die="self"),
                             task(tmp_path, "always", die="always")],
                        done_root=tmp_path / "done", show=False)
    once, always = results
    assert (once.status, once.attempts, runs(tmp_path, "once")) == ("ok", 2, 2)
    assert once.records == [{"task": "once", "value": 1, "threads": expected_threads(ex)}]
    assert (always.status, always.attempts) == ("died", 1 + MAX_RETRIES)
    assert runs(tmp_path, "always") == 1 + MAX_RETRIES
    assert "killed by signal 9" in always.error
    # A death is never recorded as done: the next run tries it again.
    assert DoneStore(tmp_path / "done").get("tiny/always", "v1") is None
    assert DoneStore(tmp_path / "done").get("tiny/once", "v1") is not None


def test_local_task_killed_beside_others_is_retried_alone(tmp_path):
    """The OOM killer takes one of two big conversions running side by side; retried
    beside the next one it died again (swin_v2_t, three times, 2026-12-06). Its retry
    waits for the running tasks and runs with nothing beside it; the rest follow."""
    log = tmp_path / "spans.log"
    script = ("import os, signal, sys, time\n"
              "name, die = sys.argv[1], sys.argv[2] == 'yes'\n"
              "first = not os.path.exists(sys.argv[3]); open(sys.argv[3], 'a').write('x')\n"
              "t0 = time.time(); time.sleep(0.3 if die and first else 0.8)\n"
              "open(sys.argv[4], 'a').write(f'{name} {t0} {time.time()}\\n')\n"
              "if die and first: os.kill(os.getpid(), signal.SIGKILL)\n"
              "print('[]')\n")
    tasks = [Task(key=f"tiny/{name}", fingerprint="v1", collect=collect_stdout_json,
                  argv=(PYTHON, "-c", script, name, die, str(tmp_path / name), str(log)))
             for name, die in (("big", "yes"), ("other", "no"), ("next", "no"))]
    results = run_tasks(LocalExecutor(jobs=2), tasks, done_root=None, show=False)
    assert [(r.key, r.status, r.attempts) for r in results] == [
        ("tiny/big", "ok", 2), ("tiny/other", "ok", 1), ("tiny/next", "ok", 1)]
    spans = [line.split() for line in log.read_text().splitlines()]
    assert [s[0] for s in spans].count("big") == 2
    retry = [(float(a), float(b)) for name, a, b in spans if name == "big"][-1]
    others = [(float(a), float(b)) for name, a, b in spans if name != "big"]
    assert len(others) == 2
    assert all(b <= retry[0] or a >= retry[1] for a, b in others), (retry, others)


def test_ray_worker_killed_mid_task_is_retried(tmp_path, ray_executor):
    tasks = [task(tmp_path, f"k{i}", die="parent", sleep=0.3) for i in range(2)]
    results = run_tasks(ray_executor, tasks, done_root=None, show=False)
    assert [(r.status, [x["task"] for x in r.records]) for r in results] == [
        ("ok", [f"k{i}"]) for i in range(2)]
    assert [runs(tmp_path, f"k{i}") for i in range(2)] == [2, 2]  # the lost run, the retry


def test_done_store_skips_same_fingerprint_only(tmp_path):
    done = tmp_path / "done"
    first = run_tasks(LocalExecutor(), [task(tmp_path, "a"), task(tmp_path, "b", code=2)],
                      done_root=done, show=False)
    again = run_tasks(LocalExecutor(), [task(tmp_path, "a"), task(tmp_path, "b", code=2)],
                      done_root=done, show=False)
    assert runs(tmp_path, "a") == 1 and again[0].cached and again[0].records == first[0].records
    assert runs(tmp_path, "b") == 2  # bad input (exit 2) is not done: it runs again
    run_tasks(LocalExecutor(), [task(tmp_path, "a", fp="v2")], done_root=done, show=False)
    assert runs(tmp_path, "a") == 2  # other code, weights or options: not done
    # A torn entry (a crash mid-write cannot make one, but a full disk might) is not done.
    path = DoneStore(done).path("tiny/a")
    path.write_text(path.read_text()[:40])
    assert DoneStore(done).get("tiny/a", "v2") is None
    assert not [p for p in done.iterdir() if ".tmp-" in p.name]


DRIVER = """
import sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from tests.zoo.test_executors import task
from zoo.executors.driver import run_tasks
from zoo.executors.local import LocalExecutor
tmp = Path(sys.argv[1])
tasks = [task(tmp, "fast1"), task(tmp, "fast2"), task(tmp, "slow", sleep=float(sys.argv[2]))]
run_tasks(LocalExecutor(jobs=1), tasks, done_root=tmp / "done", show=False)
"""


def test_interrupted_driver_rerun_skips_what_is_done(tmp_path):
    script = DRIVER.format(repo=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path), "60"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while runs(tmp_path, "slow") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runs(tmp_path, "slow") == 1, "the slow task never started"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    done = DoneStore(tmp_path / "done")
    assert done.get("tiny/fast1", "v1") and done.get("tiny/fast2", "v1")
    assert done.get("tiny/slow", "v1") is None  # interrupted: not done
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", script, str(tmp_path), "0"], check=True, timeout=60)
    assert (runs(tmp_path, "fast1"), runs(tmp_path, "fast2"), runs(tmp_path, "slow")) == (1, 1, 2)
    assert json.loads(done.path("tiny/slow").read_text())["status"] == "ok"
    assert time.monotonic() - t0 < 30


def test_executor_ray_without_ray_is_one_line_exit_2(tmp_path):
    fake = tmp_path / "site"
    (fake / "ray").mkdir(parents=True)
    (fake / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    env = {**os.environ, "PYTHONPATH": str(fake)}
    proc = subprocess.run([sys.executable, "-m", "converters", "parity-catalog", "--executor",
                           "ray", "--models", "squeezenet1_1", "--out", str(tmp_path / "out"),
                           "--results", str(tmp_path / "r")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --executor ray needs Ray, which is not installed: pip install 'modelzoo[cluster]'"]
    assert not (tmp_path / "out").exists() and not (tmp_path / "r").exists()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("how", ["flag", "RAY_ADDRESS"])
def test_a_ray_address_with_nothing_there_fails_in_one_line_within_seconds(tmp_path, how):
    """Ray would retry the GCS for minutes (and SIGTERM then gave no message): the address
    is tried first, with a bounded timeout. ``RAY_ADDRESS`` is Ray's own way to name one."""
    pytest.importorskip("ray", reason="ray is in the dev extra (pip install -e '.[dev]')")
    address = f"127.0.0.1:{_closed_port()}"
    flag = ["--address", address] if how == "flag" else []
    env = {**os.environ, **({"RAY_ADDRESS": address} if how == "RAY_ADDRESS" else {})}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "converters", "sweep", "--executor", "ray",
                           *flag, "--models", "squeezenet1_1", "--out", str(tmp_path / "out"),
                           "--results", str(tmp_path / "r")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and time.monotonic() - t0 < 60, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        f"error: --address {address}: no Ray cluster there (Connection refused within 5 s; "
        "start one with `ray start --head`, or leave --address out for a local one)"]


RAY_DRIVER = """
import sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from zoo.executors import PYTHON, Task
from zoo.executors.driver import run_tasks
from zoo.executors.ray_executor import RayExecutor
tmp = Path(sys.argv[1])
child = ("import pathlib, signal, sys, time; d = pathlib.Path(sys.argv[1]); "
         "signal.signal(signal.SIGTERM, lambda *a: ((d / 'cleaned').touch(), sys.exit(143))); "
         "(d / 'started').touch(); time.sleep(120)")
ex = RayExecutor(jobs=1)
try:
    run_tasks(ex, [Task(key="slow", argv=(PYTHON, "-c", child, str(tmp)), fingerprint="")],
              done_root=tmp / "done", show=False)
finally:
    ex.close()
"""


def test_interrupted_ray_driver_stops_its_tasks_gracefully(tmp_path):
    """Ctrl-C on the driver: the task's process gets SIGTERM (time to remove its staging
    folder), not a bare SIGKILL, and nothing is recorded as done."""
    pytest.importorskip("ray", reason="ray is in the dev extra (pip install -e '.[dev]')")
    proc = subprocess.Popen([sys.executable, "-c", RAY_DRIVER.format(repo=str(REPO)),
                             str(tmp_path)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "started").exists() and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert (tmp_path / "cleaned").exists(), err[-2000:]
    assert not (tmp_path / "done").exists() or not list((tmp_path / "done").iterdir())


SPAN = ("import sys, time; t0 = time.time(); time.sleep(0.6); "
        "open(sys.argv[1], 'w').write(f'{t0} {time.time()}')")


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_whole_node_tasks_run_alone(executor, tmp_path, request):
    """A timed task has its node to itself: its span overlaps no other task's."""
    ex = LocalExecutor(jobs=2) if executor == "local" else request.getfixturevalue("ray_executor")
    kinds = ["shared", "shared", "whole", "shared", "shared", "whole", "shared"]
    tasks = [Task(key=f"span/{i}", argv=(PYTHON, "-c", SPAN, str(tmp_path / str(i))),
                  fingerprint="", whole_node=kind == "whole") for i, kind in enumerate(kinds)]
    assert all(r.status == "ok" for r in run_tasks(ex, tasks, done_root=None, show=False))
    spans = [tuple(map(float, (tmp_path / str(i)).read_text().split())) for i in range(len(kinds))]
    shared = [s for s, k in zip(spans, kinds) if k == "shared"]
    assert any(a[0] < b[1] and b[0] < a[1] for a in shared for b in shared if a != b), \
        "shared tasks never ran side by side: the check below would prove nothing"
    for i, kind in enumerate(kinds):
        if kind == "whole":
            (a0, a1) = spans[i]
            assert not [j for j, (b0, b1) in enumerate(spans) if j != i and a0 < b1 and b0 < a1]


def test_concurrent_tasks_share_the_cpus_instead_of_oversubscribing():
    assert share_of_cpus(2, 1) is None  # alone on the node: every core, as the runtimes pick
    assert share_of_cpus(2, 2) == 1 and share_of_cpus(16, 4) == 4 and share_of_cpus(2, 8) == 1
    shared, whole = Task("a", (), ""), Task("b", (), "", whole_node=True)
    env = task_env(shared, {"PATH": "/bin"}, 3)
    assert {v: env[v] for v in THREAD_ENV_VARS} == dict.fromkeys(THREAD_ENV_VARS, "3")
    assert env["TF_NUM_INTEROP_THREADS"] == "1" and env["PATH"] == "/bin"
    assert "OMP_NUM_THREADS" not in task_env(whole, {}, 3)  # a timed task pins its own
    assert task_env(shared, {"OMP_NUM_THREADS": "5"}, 3) == {"OMP_NUM_THREADS": "5"}  # user's
    pinned = Task("c", (), "", env={"OMP_NUM_THREADS": "4"})
    assert task_env(pinned, {}, 3)["OMP_NUM_THREADS"] == "4"  # the task's own wins


def test_local_jobs_give_each_task_its_share_of_threads(tmp_path, monkeypatch):
    """Two tasks at once on this node: each process's runtimes get cpus // 2 threads, and the
    runners (ONNX Runtime, TFLite read no variable themselves) take them from the env."""
    for v in THREAD_ENV_VARS:
        monkeypatch.delenv(v, raising=False)
    probe = ("import json, torch; from converters.runners.base import BaseRunner, RunnerSpec\n"
             "class R(BaseRunner):\n    activate_impl = deactivate_impl = run_prepared = None\n"
             "print(json.dumps({'torch': torch.get_num_threads(), "
             "'runner': R(RunnerSpec('onnx', 'x')).threads}))")
    tasks = [Task(f"probe/{i}", (PYTHON, "-c", probe), "", collect=collect_stdout_json,
                  cwd=str(REPO)) for i in range(2)]
    cpus = len(os.sched_getaffinity(0))
    for jobs, want in ((1, None), (2, max(1, cpus // 2))):
        results = run_tasks(LocalExecutor(jobs=jobs), tasks, done_root=None, show=False)
        assert all(r.status == "ok" for r in results), [r.error for r in results]
        seen = [r.records[0] for r in results]
        assert seen == [{"torch": want or torch_default(), "runner": want}] * 2
