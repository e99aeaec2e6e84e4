"""converters.keras.ops: one registry of handlers, every gap reported at once, op list generated."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

keras_builder = pytest.importorskip("converters.keras")  # first: loads triton before TensorFlow
onnx = pytest.importorskip("onnx")

from converters.keras import (SUPPORTED_OPS, UnsupportedOpError, find_unsupported,  # noqa: E402
                              onnx_to_keras)
from converters.keras.graph import Node  # noqa: E402
from converters.keras.layout import Const  # noqa: E402
from converters.keras.ops import ENTRIES, FOLDERS, HANDLERS  # noqa: E402
from converters.keras.ops.docs import OPS_PAGE, readme_op_list, render_op_list  # noqa: E402
from converters.keras.ops.registry import register  # noqa: E402
from tests.support.keras_models import hand_built_onnx  # noqa: E402


def _graph(path: Path, nodes: list) -> Path:
    """A (batch, 3, 4, 4) -> (batch, 48) ONNX graph made of ``nodes``."""
    return hand_built_onnx(path, nodes, out_width=48)


def test_every_missing_op_named_before_building(tmp_path: Path) -> None:
    from onnx import helper

    path = _graph(tmp_path / "gaps.onnx", [
        helper.make_node("Relu", ["input"], ["r"], name="/stem/Relu"),
        helper.make_node("Round", ["r"], ["a"], name="/a/Round"),
        helper.make_node("Hardmax", ["a"], ["b"], name="/b/Hardmax"),
        helper.make_node("Round", ["b"], ["c"], name="/c/Round"),
        helper.make_node("Flatten", ["c"], ["logits"], name="/Flatten")])
    missing = {"Round": ["/a/Round", "/c/Round"], "Hardmax": ["/b/Hardmax"]}
    assert find_unsupported(path) == missing
    assert find_unsupported(onnx.load(str(path))) == missing
    with pytest.raises(UnsupportedOpError) as info:
        onnx_to_keras(path)
    error = info.value
    assert isinstance(error, ValueError) and error.missing == missing
    assert (error.op_type, error.node_name) == ("Round", "/a/Round")
    message = str(error)
    assert "\n" not in message
    assert message.startswith("unsupported ONNX ops 'Round' at node '/a/Round' (+1 more), "
                              "'Hardmax' at node '/b/Hardmax': the Keras builder supports ")


def test_a_handler_refusal_names_op_and_node(tmp_path: Path) -> None:
    from onnx import helper

    path = _graph(tmp_path / "softmax.onnx", [
        helper.make_node("Softmax", ["input"], ["s"], name="/attn/Softmax", axis=0),
        helper.make_node("Flatten", ["s"], ["logits"], name="/Flatten")])
    with pytest.raises(UnsupportedOpError,
                       match=r"'Softmax' at node '/attn/Softmax': .*batch axis"):
        onnx_to_keras(path)


def test_registry_is_the_one_source() -> None:
    assert SUPPORTED_OPS == tuple(sorted(SUPPORTED_OPS)) == tuple(ENTRIES)
    assert set(HANDLERS) | set(FOLDERS) == set(SUPPORTED_OPS)
    for op in ("Softmax", "Sqrt", "Pow", "Where", "Equal", "Expand", "Range", "Mod", "ScatterND",
               "Not", "Einsum", "Erf", "MatMul", "Conv"):
        assert op in SUPPORTED_OPS, op
    assert "Round" not in SUPPORTED_OPS
    with pytest.raises(ValueError, match="registered twice"):
        register("Softmax")(lambda ctx, node: None)


def test_docs_op_list_is_generated() -> None:
    """Fails when docs/keras.md's list is stale: run ``python -m converters.keras.ops --readme``."""
    assert OPS_PAGE.relative_to(OPS_PAGE.parents[1]).as_posix() == "docs/keras.md"
    assert readme_op_list(OPS_PAGE.read_text()) == render_op_list()
    from converters.keras.ops.__main__ import main

    assert main(["--check"]) == 0


def test_update_rewrites_only_the_marked_block(tmp_path: Path) -> None:
    from converters.keras.ops.docs import END, START, update_readme

    page = tmp_path / "page.md"
    page.write_text(f"# head\n\n{START}\nstale\n{END}\n\ntail\n")
    assert update_readme(page) is True
    text = page.read_text()
    assert readme_op_list(text) == render_op_list()
    assert text.startswith("# head\n\n") and text.endswith(f"{END}\n\ntail\n")
    assert update_readme(page) is False
    with pytest.raises(ValueError, match="keras.md"):
        readme_op_list("no markers here")


def _fold(op: str, *vals: Const, **attrs) -> Const:
    return FOLDERS[op](Node(f"/{op}", op, tuple(f"i{i}" for i in range(len(vals))), ("o",), attrs),
                       list(vals))


def test_batch_dependent_values_fold_only_when_linear() -> None:
    """A batch entry holds the batch's coefficient: (batch * 64) // 64 is the batch."""
    windows = Const(np.array([64, 49]), np.array([True, False]))
    per_sample = _fold("Div", windows, Const(np.array(64)))
    assert per_sample.ints() == [1, 0] and per_sample.dynamic.tolist() == [True, False]
    assert _fold("Mul", windows, Const(np.array(3))).ints() == [192, 147]
    assert not _fold("Equal", windows, Const(np.array(-1))).value.any()  # ViT's Expand(-1) test
    for op, other in (("Div", 7), ("Add", 1), ("Equal", 64)):
        with pytest.raises(UnsupportedOpError, match=f"'{op}'"):
            _fold(op, windows, Const(np.array(other)))


def test_swin_style_mask_folds() -> None:
    img = _fold("ScatterND", Const(np.zeros((4, 4), np.float32)), Const(np.array([[0], [3]])),
                Const(np.ones((2, 4), np.float32)))
    assert img.value[:, 0].tolist() == [1, 0, 0, 1]
    assert _fold("Range", *(Const(np.array(v)) for v in (0, 6, 2))).ints() == [0, 2, 4]
    assert _fold("Mod", Const(np.array([-3, 5])), Const(np.array(4)), fmod=0).ints() == [1, 1]
    picked = _fold("Where", Const(np.array([True, False])), Const(np.array([1.0, 2.0])),
                   Const(np.array([-100.0, -100.0])))
    assert picked.value.tolist() == [1.0, -100.0]
