"""``--precisions`` and the int8 options of ``convert``: which formats to make, and how int8
artifacts are calibrated (``converters.quantize``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from converters.formats import FORMATS
from converters.quantize import ACTIVATIONS, DEFAULT_METHOD, METHODS, QuantizeOptions

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_PRECISIONS = ("fp32", "fp16")


def add_precision_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precisions", default=",".join(DEFAULT_PRECISIONS), metavar="LIST",
                   help="comma-separated, of fp32, fp16, int8 (default fp32,fp16); int8 adds "
                        "onnx_int8 (ONNX Runtime static QDQ) to the same folder and manifest")
    g = p.add_argument_group("int8 (--precisions ...,int8)")
    g.add_argument("--calib", type=Path, metavar="DIR",
                   help="calibration photos (every image under DIR; default every 10th photo "
                        "of the shared imagenet-sample, which the accuracy bench leaves out)")
    g.add_argument("--calib-method", choices=METHODS, default=DEFAULT_METHOD,
                   help=f"activation ranges: observed min/max, a histogram percentile, or "
                        f"KL-divergence entropy (default {DEFAULT_METHOD})")
    g.add_argument("--per-tensor", action="store_true",
                   help="one weight scale per tensor instead of per output channel")
    g.add_argument("--int8-activations", choices=ACTIVATIONS, default="uint8",
                   help="uint8 (U8S8, the fast path on x86; default) or int8 (S8S8)")
    g.add_argument("--int8-target", type=float, metavar="AGREEMENT",
                   help="automatic mixed precision (onnx_int8 and TFLite int8 alike): keep "
                        "the layers int8 hurts most in float until top-1 agreement with fp32 "
                        "on calibration-disjoint photos reaches this (e.g. 0.99) or "
                        "--int8-float-budget layers are float")
    g.add_argument("--int8-float-budget", type=int, default=12, metavar="N",
                   help="most layers automatic mixed precision may keep in float (default 12)")
    g.add_argument("--int8-weight-bits", choices=("auto", "7", "8"), default="auto",
                   help="onnx_int8 weight range: 7 avoids int16 saturation in x86 kernels "
                        "without VNNI; auto (default): 8 on a CPU with VNNI or off x86, "
                        "else 7, by the converting machine (converters.quantize)")


def parse_precisions(text: str) -> tuple[str, ...]:
    """``fp32,int8`` -> ("fp32", "int8"); ValueError naming a bad value."""
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [v for v in values if v not in PRECISIONS]
    if bad or not values:
        raise ValueError(f"--precisions {text!r}: choose from {', '.join(PRECISIONS)}")
    return values


def formats_for(precisions: tuple[str, ...]) -> tuple[str, ...]:
    """The formats a convert makes for ``precisions``: the default formats of those
    precisions and every int8 format when int8 is asked; ONNX always (every other format is
    made from it)."""
    chosen = {f.name for f in FORMATS.values()
              if f.name == "onnx" or (f.precision in precisions
                                      and (f.default or f.precision == "int8"))}
    if {"tflite_int8", "tflite_int8_io"} & chosen:
        chosen.add("tf_savedmodel")  # TFLite int8 is converted from the SavedModel
    return tuple(f for f in FORMATS if f in chosen)


def quantize_options(args: argparse.Namespace) -> QuantizeOptions:
    """The int8 options; with int8 asked, the calibration photos are checked now (one line,
    exit 2, before any conversion work) rather than after the ONNX export."""
    from converters.calibration import choose_calibration

    seven_bit = {"auto": None, "7": True, "8": False}[args.int8_weight_bits]
    opts = QuantizeOptions(method=args.calib_method, per_channel=not args.per_tensor,
                           activations=args.int8_activations, calib=args.calib,
                           reduce_range=seven_bit, target=args.int8_target,
                           float_budget=args.int8_float_budget)
    if "int8" in parse_precisions(args.precisions):
        choose_calibration(opts.calib)  # CalibrationDataError (a ValueError): exit 2
    return opts
