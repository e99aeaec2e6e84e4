"""Stage what a bare, offline GPU machine lacks into one folder that travels with the repo:
``python -m bench.gpu.carry [--dest .cache/gpu-carry]`` (run where the weights and photos are).

- ``torch/hub/checkpoints/``: the ImageNet weight files this machine has offline (today
  mobilenet_v2's); ``bench/gpu/run.sh`` points ``TORCH_HOME`` there, and every other model
  runs with seeded random weights, as its rows say.
- ``data/imagenet-sample/``: ``--photos`` evenly spaced real photos for the agreement step
  (``MODELZOO_DATA`` there).

The default folder is under ``.cache/``, which git ignores; name it in the device tool's
``carry``. Nothing is downloaded.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from zoo.data import REPO_ROOT

DEFAULT_DEST = REPO_ROOT / ".cache" / "gpu-carry"


def stage_weights(dest: Path) -> list[Path]:
    """Copy each curated model's offline ImageNet weight file into ``dest/torch/hub/...``."""
    from zoo.meta import published_meta
    from zoo.registry import get_entry, list_models
    from zoo.weights import hub_checkpoint_dir, offline_package_files

    out = dest / "torch" / "hub" / "checkpoints"
    copied = []
    for name in list_models():
        entry = get_entry(name)
        if entry.source != "torchvision":
            continue
        file_name = published_meta(entry).file_name
        found = [p for p in (hub_checkpoint_dir() / file_name, *offline_package_files(file_name))
                 if p.is_file()]
        if found:
            out.mkdir(parents=True, exist_ok=True)
            copied.append(Path(shutil.copy2(found[0], out / file_name)))
    return copied


def stage_photos(dest: Path, n: int) -> list[Path]:
    """Copy ``n`` evenly spaced imagenet-sample photos into ``dest/data/imagenet-sample``."""
    from zoo.data import shared_data_dir

    folder = shared_data_dir() / "imagenet-sample"
    files = sorted(folder.glob("*.JPEG")) if folder.is_dir() else []
    if not files:
        return []
    out = dest / "data" / "imagenet-sample"
    out.mkdir(parents=True, exist_ok=True)
    chosen = files[::max(1, len(files) // n)][:n]
    return [Path(shutil.copy2(p, out / p.name)) for p in chosen]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu.carry", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    p.add_argument("--photos", type=int, default=16)
    args = p.parse_args(argv)
    weights, photos = stage_weights(args.dest), stage_photos(args.dest, args.photos)
    size = sum(f.stat().st_size for f in args.dest.rglob("*") if f.is_file()) / 2**20
    print(f"{args.dest}: {len(weights)} weight file(s) "
          f"({', '.join(w.name for w in weights) or 'none'}), {len(photos)} photos, "
          f"{size:.1f} MiB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
