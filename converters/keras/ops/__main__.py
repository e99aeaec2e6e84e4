"""``python -m converters.keras.ops [--readme | --check]``: print, rewrite or check the op list."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m converters.keras.ops",
                                     description="The Keras builder's supported ONNX ops.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--readme", action="store_true", help="rewrite the list in docs/keras.md")
    group.add_argument("--check", action="store_true",
                       help="exit 1 when docs/keras.md's list differs from the registry")
    args = parser.parse_args(argv)

    from converters.keras.ops.docs import OPS_PAGE, readme_op_list, render_op_list, update_readme

    if args.readme:
        print(f"{OPS_PAGE}: {'updated' if update_readme() else 'already up to date'}")
    elif args.check:
        if readme_op_list(OPS_PAGE.read_text()) != render_op_list():
            print(f"{OPS_PAGE}: the op list is stale; run python -m converters.keras.ops --readme",
                  file=sys.stderr)
            return 1
    else:
        print(render_op_list())
    return 0


if __name__ == "__main__":
    from zoo.exits import exit_process

    exit_process(main())
