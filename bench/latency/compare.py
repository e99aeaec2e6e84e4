"""Stability: do two runs agree? ``python -m bench compare A.jsonl B.jsonl [--tolerance 0.10]``.

Exit status 1 when some row's medians differ by more than the tolerance.
``--markdown PATH`` also writes the comparison, with run A's environment header.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.latency.report import load_raw, table_rows

Key = tuple[str, str, str, int, int]


@dataclass(frozen=True)
class MedianPair:
    key: Key  # model, runtime, device, batch size, threads
    a_ms: float
    b_ms: float

    @property
    def rel_diff(self) -> float:
        """|a - b| relative to the smaller of the two medians."""
        return abs(self.a_ms - self.b_ms) / min(self.a_ms, self.b_ms)


def medians(path: Path) -> dict[Key, float]:
    """The reported (pooled) median of every row that has one."""
    return {(r["model"], r["runtime"], r["device"], r["batch_size"], r["threads"]): r["median_ms"]
            for r in table_rows(load_raw(path)) if r["median_ms"] is not None}


def compare_runs(a: Path, b: Path) -> list[MedianPair]:
    ma, mb = medians(a), medians(b)
    return [MedianPair(k, ma[k], mb[k]) for k in ma if k in mb]


def verdict(pairs: list[MedianPair], tolerance: float) -> str:
    worst = max(p.rel_diff for p in pairs)
    return (f"worst difference {100 * worst:.1f}% over {len(pairs)} rows "
            f"(tolerance {100 * tolerance:.0f}%): {'PASS' if worst <= tolerance else 'FAIL'}")


def write_markdown(pairs: list[MedianPair], a: Path, b: Path, tolerance: float, out: Path) -> Path:
    from bench.latency.markdown import number_cell
    from zoo.env import markdown_header
    from zoo.tables import md_table

    rows = [(*p.key[:2], p.key[3], p.key[4], p.a_ms, p.b_ms, f"{100 * p.rel_diff:.1f}%",
             "" if p.rel_diff <= tolerance else "> tolerance") for p in pairs]
    text = (markdown_header(load_raw(a).env, "Latency stability: two back-to-back runs")
            + f"- run A: `{a.name}`; run B: `{b.name}`\n"
            + "- difference = |A - B| / min(A, B) of the medians\n"
            + f"- {verdict(pairs, tolerance)}\n\n"
            + md_table(("model", "runtime", "batch", "threads", "A median ms", "B median ms",
                        "difference", ""), rows, cell=number_cell))
    from zoo import atomic

    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic.write_text(out, text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", type=Path, help="raw records of run A (results/raw/*.jsonl)")
    parser.add_argument("b", type=Path, help="raw records of run B")
    parser.add_argument("--tolerance", type=float, default=0.10)
    parser.add_argument("--markdown", type=Path, help="also write the comparison here")


def run(args: argparse.Namespace) -> int:
    for path in (args.a, args.b):
        if not path.is_file():
            print(f"error: {path} does not exist", file=sys.stderr)
            return 2
    pairs = compare_runs(args.a, args.b)
    if not pairs:
        print("error: the two runs share no successful rows", file=sys.stderr)
        return 2
    print(f"{'model':20s} {'runtime':14s} {'batch':>5s} {'A ms':>9s} {'B ms':>9s} {'diff':>7s}")
    for p in pairs:
        flag = "" if p.rel_diff <= args.tolerance else "  > tolerance"
        print(f"{p.key[0]:20s} {p.key[1]:14s} {p.key[3]:5d} {p.a_ms:9.3f} {p.b_ms:9.3f} "
              f"{100 * p.rel_diff:6.1f}%{flag}")
    print(verdict(pairs, args.tolerance))
    if args.markdown:
        print(f"md   {write_markdown(pairs, args.a, args.b, args.tolerance, args.markdown)}")
    return 0 if max(p.rel_diff for p in pairs) <= args.tolerance else 1


def main(argv: list[str] | None = None) -> int:
    from bench.cli import BENCH_COMMANDS, DESCRIPTION
    from zoo.cli import run_cli

    return run_cli("python -m bench", DESCRIPTION, BENCH_COMMANDS,
                   ["compare", *(sys.argv[1:] if argv is None else argv)])
