"""One model of ``bench accuracy``, in its own process (a ``zoo.executors`` task):
``python -m bench.accuracy.worker MODEL --weights W --artifacts DIR [...]``.

Converts the model into ``DIR/<model>`` when it lacks the weights or formats asked for,
scores PyTorch fp32 and every artifact on the labelled photos, and writes its records as
the one result line on stdout (``zoo.executors.worker``). The photos left out are the
calibration photos the driver found (``--exclude``) and this model's own.
Exit status: 0 every row measured; 2 the model could not be converted or the photos
cannot be read (no row: a re-run tries again); 3 a row errored (the error is its row).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.exits import ExitCode, first_line, raise_if_exhausted

if TYPE_CHECKING:
    from bench.accuracy.records import AccuracyRecord


def parser() -> argparse.ArgumentParser:
    from converters.manifest import VERIFY

    p = argparse.ArgumentParser(prog="python -m bench.accuracy.worker")
    p.add_argument("model")
    p.add_argument("--weights", required=True)
    p.add_argument("--artifacts", type=Path, required=True)
    p.add_argument("--formats", help="comma-separated (default: every artifact)")
    p.add_argument("--photos", type=Path)
    p.add_argument("--limit", type=int)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--threads", type=int)
    p.add_argument("--verify", choices=VERIFY, default="fast")
    p.add_argument("--exclude", nargs="*", default=[], metavar="DIGEST",
                   help="content digests of photos to leave out (other models' calibration)")
    return p


def _needs_tensorflow(formats: tuple[str, ...] | None) -> bool:
    from converters.formats import get_format

    return formats is None or any(get_format(f).runner != "onnxruntime" for f in formats)


def score(args: argparse.Namespace) -> tuple[int, list["AccuracyRecord"], str]:
    """(exit status, records, error line) of one model."""
    from bench.accuracy.cli import ensure_artifacts
    from bench.accuracy.evaluate import calibration_digests, evaluate_model
    from bench.accuracy.photos import PhotosError, labelled_photos
    from converters.calibration import CalibrationDataError

    formats = tuple(args.formats.split(",")) if args.formats else None
    if _needs_tensorflow(formats):
        from converters.tf_compat import preload_triton

        preload_triton()  # before torchvision meets TensorFlow; TF's start-up lines, quietly
    try:
        folder, manifest, dropped = ensure_artifacts(args.model, args.weights, args.artifacts,
                                                     formats, verify=args.verify)
    except Exception as exc:  # noqa: BLE001  even the ONNX export failed
        raise_if_exhausted(exc, memory=False)
        return ExitCode.BAD_INPUT, [], f"error: {args.model}: {first_line(exc, 500)}"
    try:
        exclude = frozenset(args.exclude) | calibration_digests([manifest])
        photos = labelled_photos(args.photos, limit=args.limit, exclude=exclude)
    except (PhotosError, CalibrationDataError) as exc:
        return ExitCode.BAD_INPUT, [], f"error: {first_line(exc, 1000)}"
    scored = [a for a in manifest.artifacts if not formats or a.format in formats]
    print(f"{args.model}: scoring PyTorch fp32 and {len(scored)} artifacts on "
          f"{len(photos)} photos", file=sys.stderr)
    records = evaluate_model(folder, manifest, photos, formats=formats,
                             batch_size=args.batch_size, threads=args.threads,
                             log=lambda s: print(s, file=sys.stderr), not_converted=dropped)
    return (ExitCode.PARTIAL if any(r.error for r in records) else ExitCode.OK), records, ""


def _run(args: argparse.Namespace, out: Any) -> int:
    from zoo.executors.worker import write_result

    try:
        code, records, error = score(args)
    except Exception as exc:  # noqa: BLE001  e.g. PyTorch failed on the photos: the row says so
        raise_if_exhausted(exc, memory=False)
        code, records, error = ExitCode.PARTIAL, [], f"error: {args.model}: {first_line(exc, 500)}"
    if error:
        print(error, file=sys.stderr)
    write_result(out, [r.to_json() for r in records], error.removeprefix("error: "))
    return code


def main(argv: list[str] | None = None) -> int:
    from zoo.executors.worker import stdout_to_stderr
    from zoo.exits import run_command

    args = parser().parse_args(argv)
    out = stdout_to_stderr()
    return run_command("bench.accuracy.worker", lambda: _run(args, out))


if __name__ == "__main__":
    from zoo.exits import exit_process

    exit_process(main())
