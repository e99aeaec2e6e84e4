"""Helpers for Keras-builder tests: hand-built ONNX graphs, and saved models checked in a
fresh process (nothing registered by the test's own imports)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.conftest import REPO

_LOAD_AND_RUN = ("import sys, numpy as np, converters.keras, keras\n"
                 "for p in sys.argv[1:]:\n"
                 "    m = keras.saving.load_model(p)\n"
                 "    np.save(p[:-6] + '.got.npy', np.asarray(m(np.load(p[:-6] + '.in.npy'))))\n")


def hand_built_onnx(path: Path, nodes: list, out_width: int) -> Path:
    """A (batch, 3, 4, 4) -> (batch, out_width) opset-17 ONNX graph made of ``nodes``."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 4, 4])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", out_width])
    graph = helper.make_graph(nodes, "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def assert_fresh_process_outputs(cases: dict[str, tuple[Path, np.ndarray, np.ndarray]],
                                 atol: float) -> None:
    """Load each saved ``.keras`` file in a new interpreter (only ``import converters.keras``),
    run it on its NHWC input and compare with ``want``: ``{name: (path, x_nhwc, want)}``."""
    for path, x, want in cases.values():
        np.save(str(path)[:-6] + ".in.npy", x)
        np.save(str(path)[:-6] + ".want.npy", want)
    subprocess.run([sys.executable, "-c", _LOAD_AND_RUN, *(str(c[0]) for c in cases.values())],
                   cwd=REPO, check=True, capture_output=True, timeout=300)
    for name, (path, _, want) in cases.items():
        got = np.load(str(path)[:-6] + ".got.npy")
        assert np.abs(got - want).max() <= atol, name
