"""How long per-layer parity takes: ``modelzoo parity-time [MODEL] [--repeats N]``.

Converts the model once (not timed), then times ``run_parity`` over all
format pairs in fresh processes and writes ``results/parity-time-<model>.md``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from zoo import atomic
from zoo.cli import add_results_argument, results_dir
from zoo.tables import md_table

_CHILD = """
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
from converters.parity.run import run_parity
timings = {}
t1 = time.perf_counter()
reports = run_parity(Path(sys.argv[1]), timings=timings)
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "parity_s": t2 - t1, "steps": timings,
                  "passed": all(r.passed for r in reports)}))
"""


def time_once(folder: Path, threads: int | None) -> dict:
    import os

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(folder)], capture_output=True,
                          text=True, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def step_table(runs: list[dict]) -> str:
    """Median seconds per step over the runs, library imports first."""
    seconds = [("imports", [r["import_s"] for r in runs])]
    seconds += [(step, [r["steps"][step] for r in runs]) for step in runs[0]["steps"]]
    return md_table(("step", "median s"),
                    [(step, f"{statistics.median(s):.2f}") for step, s in seconds])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default="squeezenet1_0")
    p.add_argument("--weights", default="random")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="artifacts")
    add_results_argument(p)


def run(args: argparse.Namespace) -> int:

    from converters.pipeline import ConvertOptions, convert_model
    from zoo.env import environment, markdown_header
    from zoo.exits import ExitCode

    manifest = convert_model(args.model, ConvertOptions(weights=args.weights,
                                                        out_root=Path(args.out)),
                             log=lambda s: None)
    runs = [time_once(Path(args.out) / args.model, None) for _ in range(args.repeats)]
    totals = [r["import_s"] + r["parity_s"] for r in runs]
    env = environment(weights=manifest.weights.label, with_gpu=False)
    lines = [markdown_header(env, f"Per-layer parity time: {args.model}"),
             f"All pairs ({', '.join(k for k in runs[0]['steps'] if k.startswith('compare'))}), "
             f"{args.repeats} runs, each in a fresh process (imports included).\n",
             f"- total per run (s): {', '.join(f'{t:.1f}' for t in totals)}; "
             f"median {statistics.median(totals):.1f} s; all pairs passed: "
             f"{all(r['passed'] for r in runs)}\n", step_table(runs).rstrip("\n")]
    path = results_dir(args) / f"parity-time-{args.model}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, "\n".join(lines) + "\n")
    print("\n".join(lines[1:]))
    print(f"wrote {path}")
    return 0 if all(r["passed"] for r in runs) else ExitCode.CHECKS_FAILED


def main(argv: list[str] | None = None) -> int:
    from bench.cli import BENCH_COMMANDS, DESCRIPTION
    from zoo.cli import run_cli

    return run_cli("python -m bench", DESCRIPTION, BENCH_COMMANDS,
                   ["parity-time", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    from zoo.exits import exit_process

    exit_process(main())
