"""``python -m converters COMMAND``: the converters' commands (see ``converters.cli``)."""
from __future__ import annotations

from converters.cli import COMMANDS, DESCRIPTION
from zoo.cli import run_cli


def main(argv: list[str] | None = None) -> int:
    return run_cli("python -m converters", DESCRIPTION, COMMANDS, argv)


if __name__ == "__main__":
    from zoo.exits import exit_process

    exit_process(main())
