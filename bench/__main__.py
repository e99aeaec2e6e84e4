"""``python -m bench [COMMAND] ...``: latency (the default), report, compare, transfer,
accuracy, keras-seed, parity-time (see ``bench.cli``)."""
from __future__ import annotations

from bench.cli import BENCH_COMMANDS, DESCRIPTION
from zoo.cli import run_cli


def main(argv: list[str] | None = None) -> int:
    return run_cli("python -m bench", DESCRIPTION, BENCH_COMMANDS, argv, default="latency")


if __name__ == "__main__":
    from zoo.exits import exit_process

    exit_process(main())
