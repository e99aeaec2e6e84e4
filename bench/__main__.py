"""``python -m bench [latency options]`` or ``python -m bench transfer [options]``."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from zoo.exits import run_command

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "transfer":
        from bench.transfer.cli import main as transfer_main

        return run_command("python -m bench transfer", lambda: transfer_main(argv[1:]))
    from bench.latency.cli import main as latency_main

    return run_command("python -m bench", lambda: latency_main(argv))


if __name__ == "__main__":
    sys.exit(main())
