"""The model a command converts: a catalog name, ``timm/<name>``, or a user's own model
(``path/to/file.py:factory`` or ``--module pkg.module:factory``) with its preprocessing
from flags (ImageNet's by default) and an optional fine-tuned head."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zoo.entry import ModelEntry

USER_FLAGS = ("input_size", "resize", "mean", "std", "interpolation", "num_classes")
MIN_INPUT_PX = 8
# One 4096 px image is 201 MB in float32 before the first layer, and every layer's
# activations grow with the pixels (ImageNet classifiers take 224 to 600 px): beyond
# this a conversion runs out of memory rather than saying so.
MAX_INPUT_PX = 4096


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?",
                   help="catalog name (resnet50, any torchvision classifier), timm/<name>, or "
                        "your own model as path/to/file.py:factory")
    own = p.add_argument_group("your own model (file.py:factory or --module)")
    own.add_argument("--module", metavar="PKG.MOD:FACTORY",
                     help="your model's factory in an importable module, instead of a file")
    own.add_argument("--input-size", type=int, metavar="PX",
                     help="square input (centre crop) size in pixels (default 224)")
    own.add_argument("--resize", type=int, metavar="PX",
                     help="shorter side before the crop (default: input size / 0.875)")
    own.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"),
                     help="normalisation mean (default ImageNet's 0.485 0.456 0.406)")
    own.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"),
                     help="normalisation std (default ImageNet's 0.229 0.224 0.225)")
    own.add_argument("--interpolation", choices=("bilinear", "bicubic", "nearest"),
                     help="resize interpolation (default bilinear)")
    own.add_argument("--num-classes", type=int, metavar="N",
                     help="classes of a fine-tuned head (default: what the checkpoint holds)")


def model_of(args: argparse.Namespace) -> "str | ModelEntry":
    """The catalog name, or the user's model as an entry; ValueError (one line) for flags
    that do not fit."""
    from zoo.sources.user import is_user_target

    given = [f"--{f.replace('_', '-')}" for f in USER_FLAGS if getattr(args, f) is not None]
    if args.module and args.model:
        raise ValueError(f"give either a model ({args.model}) or --module {args.module}, not both")
    target = args.module or args.model
    if not target:
        raise ValueError("name a model: a catalog name, timm/<name>, path/to/file.py:factory "
                         "or --module pkg.module:factory")
    if not args.module and not is_user_target(target):
        if given:
            raise ValueError(f"{', '.join(given)}: only for your own model (file.py:factory or "
                             f"--module); {target} has its own preprocessing")
        return target
    if args.num_classes is not None and args.num_classes < 1:
        raise ValueError(f"--num-classes must be at least 1, got {args.num_classes}")
    _check_pixels("--input-size", args.input_size, MAX_INPUT_PX)
    _check_pixels("--resize", args.resize, 2 * MAX_INPUT_PX)
    return _user_entry(target, args)


def _check_pixels(flag: str, value: int | None, most: int) -> None:
    if value is None:
        return
    if value < MIN_INPUT_PX:
        raise ValueError(f"{flag} must be at least {MIN_INPUT_PX} pixels, got {value}")
    if value > most:
        mb = 3 * 4 * value * value / 1e6
        raise ValueError(f"{flag} {value}: at most {most} pixels (one {value} px image is "
                         f"{mb:,.0f} MB in float32 before the first layer, and every layer's "
                         "activations grow with it; ImageNet classifiers take 224 to 600)")


def _user_entry(target: str, args: argparse.Namespace) -> "ModelEntry":
    import dataclasses

    from zoo.entry import imagenet_preprocessing
    from zoo.sources.user import user_entry

    prep = imagenet_preprocessing(args.input_size or 224, args.resize,
                                  args.interpolation or "bilinear")
    if prep.resize_size < prep.crop_size:
        raise ValueError(f"--resize {prep.resize_size} is smaller than the input size "
                         f"{prep.crop_size}")
    prep = dataclasses.replace(prep, mean=tuple(args.mean or prep.mean),
                               std=tuple(args.std or prep.std))
    return user_entry(target, preprocessing=prep, num_classes=args.num_classes,
                      weights=args.weights)
