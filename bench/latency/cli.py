"""``modelzoo bench`` (``python -m bench``): latency, size and compute per model and runtime.

Each (model, runtime, device) runs in its own fresh subprocess, one at a time.
Raw records go to ``<results>/raw/<name>.jsonl``; CSV, Markdown and a PNG plot are
generated from them in the results folder (``runs/``; the tracked ``results/`` with
``--publish``). ``report RAW.jsonl`` regenerates the tables; ``compare A.jsonl B.jsonl``
compares two runs.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from zoo.cli import (add_models_argument, add_results_argument, expand_models, results_dir,
                     run_cli)
from zoo.executors.cli import add_executor_arguments
from zoo.exits import ExitCode, require_writable_dir

EXIT_USAGE = ExitCode.BAD_INPUT


def _csv_list(values: list[str] | None) -> list[str]:
    return [v for item in values or [] for v in item.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The latency command's own parser (for callers that parse without dispatching)."""
    p = argparse.ArgumentParser(prog="python -m bench latency", description=__doc__)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    from converters.manifest import add_verify_arguments

    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    add_models_argument(p, default="the 16 curated models")
    p.add_argument("--runtimes", nargs="+",
                   help="default: every runtime that runs on --device (see --list-runtimes)")
    p.add_argument("--batch-sizes", default="1", help="comma-separated, e.g. 1,8,32 (default 1)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="intra-op threads for every runtime (default: all cores)")
    p.add_argument("--min-time", type=float, default=2.0,
                   help="timed seconds per row and process (min)")
    p.add_argument("--repeats", type=int, default=3,
                   help="fresh processes per row, run in interleaved passes; their samples "
                        "are pooled (default 3)")
    p.add_argument("--min-runs", type=int, default=10, help="timed calls per row (min)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up calls (at least)")
    p.add_argument("--warmup-time", type=float, default=0.5, help="warm-up seconds (at least)")
    p.add_argument("--max-time", type=float, default=60.0,
                   help="stop a slow row after this many seconds (with >= 3 calls)")
    p.add_argument("--weights", default="auto",
                   help="auto (ImageNet where available offline, else random) | imagenet | "
                        "random[:SEED]")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"),
                   help="artifact root; missing models are converted into it")
    add_results_argument(p)
    p.add_argument("--name", default="", help="suffix for the result file names")
    p.add_argument("--reconvert", action="store_true", help="convert even if artifacts exist")
    add_verify_arguments(p)
    p.add_argument("--check-overhead", action="store_true",
                   help="also compare the harness with a bare perf_counter loop per row")
    p.add_argument("--job-timeout", type=float, default=1200.0, help="seconds per worker")
    p.add_argument("--remeasure-peak", action="store_true",
                   help="measure the GEMM peak again instead of using this machine's cached "
                        "figure (cached per device, threads, CPU/GPU model and library versions)")
    p.add_argument("--list-runtimes", action="store_true")
    add_executor_arguments(p, jobs_help="conversions and static figures at once (default 1); "
                                        "a timed task always has its node to itself")


def parse_options(args: argparse.Namespace):
    """Validated BenchOptions; ValueError with a one-line reason otherwise."""
    from bench.latency.orchestrate import BenchOptions
    from bench.latency.runtimes import available_runtimes, get_runtime, runtimes_for
    from bench.latency.timing import TimingPolicy
    from zoo.registry import list_models

    models = expand_models(args.models, list_models())
    requested = _csv_list(args.runtimes) or runtimes_for(args.device)
    for name in requested:
        get_runtime(name)
    # What cannot run here (library, provider or GPU missing) is left out with its reason,
    # which the header and the Markdown keep; nothing is timed for it.
    runtimes, skipped = available_runtimes(requested, args.device)
    try:
        batches = tuple(int(b) for b in args.batch_sizes.split(",") if b.strip())
    except ValueError:
        raise ValueError(f"--batch-sizes takes integers like 1,8,32, not {args.batch_sizes!r}"
                         ) from None
    _check_bounds(args, batches)
    return BenchOptions(
        device=args.device, models=tuple(models), runtimes=tuple(runtimes), batch_sizes=batches,
        threads=args.threads, timing=TimingPolicy(
            min_time=args.min_time, min_runs=args.min_runs, warmup_runs=args.warmup,
            warmup_time=args.warmup_time, max_time=args.max_time),
        weights=args.weights,
        artifacts_root=args.artifacts, results_dir=results_dir(args), name=args.name,
        job_timeout=args.job_timeout, reconvert=args.reconvert,
        check_overhead=args.check_overhead, repeats=args.repeats, on_damaged=args.on_damaged,
        verify=args.verify,
        remeasure_peak=args.remeasure_peak, skipped=tuple(skipped.items()))


def _check_bounds(args: argparse.Namespace, batches: tuple[int, ...]) -> None:
    """Every number within what makes sense here; ValueError naming the first that is not."""
    from zoo.env import available_cpus

    cpus = available_cpus()
    if not 1 <= args.threads <= cpus:
        raise ValueError(f"--threads {args.threads}: this machine gives this process {cpus} "
                         f"CPU(s); use 1 to {cpus} (more threads than cores only measures "
                         "contention)")
    positive = {"--min-time": args.min_time, "--max-time": args.max_time,
                "--job-timeout": args.job_timeout, "--repeats": args.repeats,
                "--min-runs": args.min_runs}
    for flag, value in positive.items():
        if not value > 0:  # also catches NaN
            raise ValueError(f"{flag} must be positive, got {value:g}")
    for flag, value in {"--warmup": args.warmup, "--warmup-time": args.warmup_time}.items():
        if not value >= 0:
            raise ValueError(f"{flag} must be 0 or more, got {value:g}")
    if args.max_time < args.min_time:
        raise ValueError(f"--max-time ({args.max_time:g} s) is below --min-time "
                         f"({args.min_time:g} s)")
    if not batches or min(batches) < 1:
        raise ValueError(f"--batch-sizes must be positive integers, got {args.batch_sizes!r}")


def cuda_problem() -> str:
    """Why --device cuda cannot run here, or "" when it can."""
    import torch

    if not torch.cuda.is_available():
        return (f"--device cuda: no CUDA GPU is visible (torch {torch.__version__}: "
                "torch.cuda.is_available() is False); use --device cpu")
    return ""


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def run_name(opts: Any, env: dict[str, Any]) -> str:
    """``latency-<device>-<threads>t-<hardware>[-name]``: the set-up is in the file name."""
    hardware = env["gpu"]["name"] if opts.device == "cuda" and env.get("gpu") else env["cpu"]
    name = f"latency-{opts.device}-{opts.threads}t-{slug(hardware)}"
    return f"{name}-{slug(opts.name)}" if opts.name else name


def header(opts: Any, command: list[str]) -> dict[str, Any]:
    from zoo.env import environment

    env = environment(threads=opts.threads, weights=opts.weights,
                      with_gpu=opts.device == "cuda")
    env["bench"] = {
        "device": opts.device, "models": list(opts.models), "runtimes": list(opts.runtimes),
        "batch_sizes": list(opts.batch_sizes), "command": command,
        "skipped_runtimes": dict(opts.skipped),
        "timing": {"min_time_s": opts.timing.min_time, "min_runs": opts.timing.min_runs,
                   "warmup_runs": opts.timing.warmup_runs,
                   "warmup_time_s": opts.timing.warmup_time,
                   "max_time_s": opts.timing.max_time, "repeats": opts.repeats}}
    return env


def _list_runtimes(device: str) -> int:
    """Every runtime, and whether it can run on ``device`` here (else why it is skipped)."""
    from bench.latency.runtimes import RUNTIMES

    width = max(len(name) for name in RUNTIMES)
    for rt in RUNTIMES.values():
        why = rt.unavailable(device)
        here = f"skipped on {device}: {why}" if why else f"runs on {device} here"
        default = "" if rt.default else " (by name only)"
        print(f"{rt.name:{width}s} {rt.precision:5s} {'/'.join(rt.devices):9s} "
              f"{rt.description}{default} [{here}]")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.list_runtimes:
        return _list_runtimes(args.device)
    opts = parse_options(args)  # a bad value: ValueError, one line and exit 2 (zoo.exits)
    require_writable_dir(opts.results_dir, "--results")
    require_writable_dir(opts.artifacts_root, "--artifacts")
    if opts.device == "cuda" and (problem := cuda_problem()):
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    for name, why in opts.skipped:
        print(f"skipped: {name} on {opts.device}: {why}", file=sys.stderr)
    if not opts.runtimes:
        print(f"error: no runtime asked for can run on {opts.device} here (see the skipped "
              "lines above)", file=sys.stderr)
        return EXIT_USAGE
    from bench.latency.console import run_with_progress
    from bench.latency.orchestrate import refuse_damaged
    from zoo.executors.cli import executor_from

    refuse_damaged(opts)  # before the GEMM peak or any worker

    env = header(opts, [os.path.basename(sys.orig_argv[0]), *sys.orig_argv[1:]])
    with executor_from(args) as executor:  # Ray missing, or no cluster: one line, exit 2
        return run_with_progress(opts, env, run_name(opts, env), executor)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench [latency options]``: the latency command alone."""
    from bench.cli import BENCH_COMMANDS, DESCRIPTION

    return run_cli("python -m bench", DESCRIPTION, BENCH_COMMANDS,
                   ["latency", *(sys.argv[1:] if argv is None else argv)])
