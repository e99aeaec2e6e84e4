"""Every intermediate tensor of one format, keyed by ONNX tensor name, in ONNX layout.

Each capture runs the format's own runner (or, for the TF graph, onnx2tf's
Keras graph of the SavedModel) and maps its native tensor names back to ONNX
names through what conversion recorded: module paths (PyTorch), tensor maps
with layout permutations (onnx2tf, Keras builder). What cannot be aligned is
returned with the reason, never dropped silently.
"""
from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from converters.parity.graph_index import GraphIndex
from converters.runners.base import NCHW_TO_NHWC, to_nhwc


@dataclass
class Capture:
    format: str
    tensors: dict[str, np.ndarray]  # ONNX tensor name -> array in ONNX layout
    unaligned: dict[str, str] = field(default_factory=dict)  # ONNX tensor name -> why
    # ONNX tensors computed inside one fused op of this format, keyed by the tensor it outputs
    fused: dict[str, list[str]] = field(default_factory=dict)


def spill(capture: Capture, folder: Path) -> Capture:
    """``capture`` with each tensor moved to a read-only memory map of a file in ``folder``,
    unlinked at once (the map keeps its data until dropped): the page cache holds the
    tensors, reclaimable, instead of the process. For a model whose every tensor at one
    image outgrows parity's memory (efficientnet_b7 at 600 px: 3.3 GiB of module outputs
    an image, several captures held: killed at 24 GB)."""
    for i, (name, value) in enumerate(list(capture.tensors.items())):
        path = folder / f"{capture.format}-{i}.npy"
        np.save(path, np.asarray(value))
        capture.tensors[name] = np.load(path, mmap_mode="r")
        path.unlink()
    return capture


def to_onnx_layout(array: np.ndarray, perm: list[int] | None) -> np.ndarray:
    """Undo a recorded permutation (artifact axis j holds ONNX axis perm[j])."""
    if not perm or array.ndim != len(perm):
        return array
    return np.transpose(array, np.argsort(perm))


def capture_torch(model, x: np.ndarray, index: GraphIndex) -> Capture:
    from converters.runners import RunnerSpec
    from converters.runners.torch_runner import TorchRunner

    runner = TorchRunner(RunnerSpec("pytorch", ""), model=model, capture=True)
    with runner:
        runner.infer({"input": x})
    outputs = index.module_outputs(set(runner.captured))
    tensors = {onnx_name: runner.captured[module] for module, onnx_name in outputs.items()}
    aligned = set(tensors)
    unaligned = {s.name: ("inside module " + s.module if s.module else "top-level functional op")
                 + ": no PyTorch module output to hook"
                 for s in index.sites if s.name not in aligned}
    return Capture("pytorch", tensors, unaligned)


def capture_onnx(onnx_path: Path, x: np.ndarray, fmt: str = "onnx") -> Capture:
    from converters.runners import RunnerSpec
    from converters.runners.onnxrt_runner import OnnxrtRunner

    runner = OnnxrtRunner(RunnerSpec(fmt, str(onnx_path)), capture=True)
    with runner:
        out = runner.infer({"input": x})
    return Capture(fmt, {**runner.captured, **out})


def capture_tflite(path: Path, tensor_map: dict, x: np.ndarray, fmt: str,
                   folded: dict[str, str] | None = None) -> Capture:
    """TFLite with preserve-all-tensors; TF layer names come from the onnx2tf record.

    ``folded``: ONNX tensor -> the output of the affine op that is its only reader
    (``folded_readers``: a BatchNormalization, or a Mul/Add/Sub/Div by a constant, after a
    Conv). TFLite's converter folds such an op into the Conv before it: the Conv's tensor
    (named after the Conv alone) then holds the op's output and the op has no tensor. That
    tensor is compared with the last op of the chain that has no tensor of its own, and
    the Conv's output is unaligned, saying so (compared with the Conv's own output it read
    as a layer error: 66 dB on a random tiny MaxViT, whose BN eps is 1e-3; 5.7 dB on
    maxvit_t; 0 dB on timm's convnext_zepto_rms, whose layer scale of 1e-6 TFLite
    multiplied into the Conv's weights)."""
    from converters.runners import RunnerSpec
    from converters.runners.tflite_runner import TfliteRunner

    runner = TfliteRunner(RunnerSpec(fmt, str(path), input_permutation=NCHW_TO_NHWC),
                          preserve_all_tensors=True)
    with runner:
        out = runner.infer({"input": x})
        details = runner.interpreter.get_tensor_details()
        copies, rank = _layout_copies(runner.interpreter, details), _graph_rank(tensor_map)
        by_layer = _tflite_activations(details, _execution_order(runner.interpreter), copies,
                                       rank)
        activations = [_owner_first(_layers_named(d), rank) for d in details
                       if _is_activation(d) and d["index"] not in copies]
        named = {layer for layers in activations for layer in layers}
        owners = {layers[0] for layers in activations if layers}
        tensor_map = _with_scope_names(tensor_map, by_layer)
        onnx_of_layer = {layer: name for name, rec in tensor_map.items()
                         for layer in (rec["tf_layer"], *rec["tf_aliases"])}
        tensors, unaligned, fused = {}, {}, {}
        for onnx_name, rec in tensor_map.items():
            found = by_layer.get(rec["tf_layer"])
            if found is None:
                if onnx_name not in tensors:  # else a Conv's tensor holds it (folded op)
                    unaligned[onnx_name] = f"{rec['op']} fused into a following TFLite op"
                continue
            idx, layers = found
            value = runner.interpreter.get_tensor(idx).astype(np.float32)
            holder = _folded_into(onnx_name, tensor_map, named, folded or {})
            partly = (folded or {}).get(holder)
            if partly in tensor_map and tensor_map[partly]["tf_layer"] in named - owners:
                # the reader's scale folded back into this tensor, its shift forward into a
                # later op (visformer_tiny: the BN's into the position-embedding Add)
                unaligned[onnx_name] = (f"{rec['op']}: holds part of the "
                                        f"{tensor_map[partly]['op']} after it ({partly}), "
                                        "the rest fused into a later op")
                continue
            if holder != onnx_name:
                unaligned[onnx_name] = (f"{rec['op']}: TFLite folded the "
                                        f"{tensor_map[holder]['op']} after it ({holder}) "
                                        f"into it; compared as that op")
                onnx_name, rec = holder, tensor_map[holder]
                unaligned.pop(onnx_name, None)
            tensors[onnx_name] = to_onnx_layout(value, rec["permutation"])
            fused[onnx_name] = [onnx_of_layer[l] for l in layers[1:]
                                if onnx_of_layer.get(l, onnx_name) != onnx_name]
    tensors.update(out)
    return Capture(fmt, tensors, unaligned, fused)


def _folded_into(name: str, tensor_map: dict, named: Collection[str],
                 folded: dict[str, str]) -> str:
    """The last tensor of the chain of folded readers after ``name`` whose layers no TFLite
    activation names at all (``name`` itself when its reader is named). A reader named
    somewhere was not folded back into the Conv, even where its last op fused forward
    (skresnet18's BN after a dilated Conv: SpaceToBatch, Conv, BatchToSpace, then the BN's
    Mul and its Add fused with the ReLU)."""
    while (nxt := folded.get(name)) in tensor_map and tensor_map[nxt]["tf_layer"] not in named:
        name = nxt
    return name


# Ops TFLite's converter folds a following affine op into (its weights and bias absorb
# the scale and shift). An op after anything else (DenseNet's BN after a Concat) stays an
# op of its own, or fuses forward, and is never read from its input's tensor.
FOLDS_AFFINE = ("Conv", "ConvTranspose", "Gemm", "MatMul")
AFFINE_BY_CONSTANT = ("Mul", "Add", "Sub", "Div")


def folded_readers(onnx_path: Path) -> dict[str, str]:
    """ONNX tensor -> the output of its only reader when that reader is an affine op TFLite
    may fold backwards (BatchNormalization, or Mul/Add/Sub/Div by a constant), along the
    chain of such ops from a Conv's (``FOLDS_AFFINE``) output. A scale after anything
    else (NF-Net's ``act(x) * beta`` before a Conv: TFLite folds it forward, into the next
    Conv's weights) is never read from its input's tensor."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    readers: dict[str, list] = {}
    producer: dict[str, str] = {}
    constants = {i.name for i in graph.initializer}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
        for name in node.output:
            producer[name] = node.op_type
        if node.op_type == "Constant":
            constants.update(node.output)
    outputs = {o.name for o in graph.output}

    def foldable(node) -> bool:
        if node.op_type == "BatchNormalization":
            return True
        return node.op_type in AFFINE_BY_CONSTANT and len(node.input) == 2 and (
            sum(i in constants for i in node.input) == 1)

    out: dict[str, str] = {}
    for name, made_by in producer.items():
        if made_by not in FOLDS_AFFINE:
            continue
        while len(nodes := readers.get(name, [])) == 1 and foldable(nodes[0]) \
                and name not in outputs:  # the chain from a Conv's output
            out[name] = name = nodes[0].output[0]
    return out


def _with_scope_names(tensor_map: dict, by_layer: dict[str, tuple[int, list[str]]]) -> dict:
    """Keras-exported records (``scope: "keras"``) renamed to their TFLite name scopes.

    TensorFlow numbers a layer's name scope when the model is traced again for export
    (``features.0.Conv`` -> ``features.0.Conv_1``), the same number for every layer of
    one trace: the suffix that names the most activations is the one this file used."""
    keras_recs = {n: r for n, r in tensor_map.items() if r.get("scope") == "keras"}
    if not keras_recs:
        return tensor_map
    suffix = max(("", "_1", "_2", "_3"),
                 key=lambda s: sum(f"{r['tf_layer']}{s}" in by_layer for r in keras_recs.values()))
    return {**tensor_map, **{n: {**r, "tf_layer": r["tf_layer"] + suffix}
                             for n, r in keras_recs.items()}}


def _ops_details(interpreter) -> list[dict]:
    """The interpreter's ops in execution order ([] where it hides them)."""
    try:
        return interpreter._get_ops_details()  # noqa: SLF001  public in all but name
    except AttributeError:
        return []


def _execution_order(interpreter) -> list[int]:
    """Output tensor indices in the order the ops run ([] where the interpreter hides it)."""
    order: dict[int, None] = {}
    for op in _ops_details(interpreter):
        order.update(dict.fromkeys(int(i) for i in op["outputs"]))
    return list(order)


def _layout_copies(interpreter, details: list[dict]) -> set[int]:
    """Tensors a TRANSPOSE made from a tensor and named after it with a number appended
    (``pos_embed.Add_1/Add`` -> ``pos_embed.Add_1/Add1``): TFLite's converter moved a
    reader's transpose up to the op's output (timm's eca_botnext26ts_256: the 5-D Add of
    the relative position logits, then the next reshape's transpose to ONNX order). The
    copy is in the reader's layout, not the layer's: read as the layer's output it failed
    parity at -2.8 dB."""
    name = {int(d["index"]): d["name"] for d in details}
    copies = set()
    for op in _ops_details(interpreter):
        if op["op_name"] != "TRANSPOSE" or not len(op["inputs"]) or not len(op["outputs"]):
            continue
        src, out = name.get(int(op["inputs"][0]), ""), name.get(int(op["outputs"][0]), "")
        if src and out.startswith(src) and out[len(src):].isdigit():
            copies.add(int(op["outputs"][0]))
    return copies


def _graph_rank(tensor_map: dict) -> dict[str, int]:
    """Keras layer -> its position in the ONNX graph (the Keras map is in build order), under
    every name scope TensorFlow may number it with; onnx2tf's layers are not ranked."""
    rank: dict[str, int] = {}
    for i, rec in enumerate(tensor_map.values()):
        if rec.get("scope") == "keras":
            for layer in (rec["tf_layer"], *rec.get("tf_aliases", ())):
                for suffix in ("", "_1", "_2", "_3"):
                    rank[layer + suffix] = i
    return rank


def _owner_first(layers: list[str], rank: dict[str, int]) -> list[str]:
    """``layers`` (those a tensor names) with the one whose output it holds first: the first
    named, or where that is a ranked Keras layer, the latest ranked one in the graph.
    TFLite may name a fused tensor after an earlier layer (visformer_tiny: a BN's shift
    added with the position embedding in one ADD named
    ``norm.BatchNormalization_1/batchnorm/add_1;Add_1/...``). A builder's helper named
    first (a ``_perm`` transpose TFLite merged with reshapes, in MaxViT's partitions) keeps
    the tensor: the reshapes named after it are not what it holds."""
    if not layers or layers[0] not in rank:
        return layers
    ranked = [layer for layer in layers if layer in rank]
    owner = max(ranked, key=lambda layer: rank[layer])
    return [owner, *(layer for layer in layers if layer != owner)]


def _is_activation(detail: dict) -> bool:
    """Activations have a dynamic batch axis; weights do not."""
    sig = detail["shape_signature"]
    return bool(len(sig) and sig[0] == -1)


def _layers_named(detail: dict) -> list[str]:
    """The TF layers a tensor's name lists, the one that made it first: its name parts are
    "<keras model name>/<layer>/<op>" (the model name may be numbered: model_104)."""
    return [part.split("/")[1] for part in detail["name"].split(";") if part.count("/") >= 2]


def _tflite_activations(details: list[dict], order: list[int] | None = None,
                        copies: set[int] = frozenset(), rank: dict[str, int] | None = None
                        ) -> dict[str, tuple[int, list[str]]]:
    """TF layer name -> (tensor index, TF layers fused into that tensor).

    A tensor named ``model/tf.nn.relu_20/Relu;model/tf.nn.convolution_20/convolution``
    holds the result of the first op named; the others were fused into it. A layer that
    is several ops (Keras' ``hard_sigmoid``: ``relu6(x + 3)``, then ``/ 6``) names several
    tensors: its output is the one made last, in ``order`` (the ops' execution order;
    tensor index order where unknown). A layer named again, not first, by a later tensor
    had its last ops fused forward (a Conv's bias folded into the Add after it): its own
    tensor is not its output and it is left out. ``copies`` (``_layout_copies``) name no
    layer; ``rank`` (``_graph_rank``) picks which layer a fused tensor belongs to.
    """
    position = {idx: i for i, idx in enumerate(order or ())}
    out: dict[str, tuple[int, list[str]]] = {}
    fused_later: set[str] = set()  # layers some of whose ops a later tensor holds
    for d in sorted(details, key=lambda d: (position.get(d["index"], -1), d["index"])):
        if not _is_activation(d) or d["index"] in copies:
            continue
        if layers := _owner_first(_layers_named(d), rank or {}):
            out[layers[0]] = (d["index"], layers)
            fused_later.discard(layers[0])
            fused_later.update(lay for lay in layers[1:] if lay in out and lay != layers[0])
    # a layer whose last ops ran fused into a later op (pit_ti_224: the patch conv's bias
    # added with the position embedding) has no tensor of its own output
    return {layer: found for layer, found in out.items() if layer not in fused_later}


def capture_keras(path: Path, x: np.ndarray, fmt: str = "keras") -> Capture:
    """The Keras artifact with every mapped layer as an extra output."""
    import keras

    import converters.keras  # noqa: F401  registers custom layers
    from converters.keras_export import layer_map_path

    record = json.loads(layer_map_path(path).read_text())["tensors"]
    model = keras.saving.load_model(path, compile=False)
    layer_names = {layer.name for layer in model.layers}
    names = [n for n, r in record.items() if r["layer"] in layer_names]
    probe = keras.Model(model.inputs, [model.get_layer(record[n]["layer"]).output for n in names])
    values = probe(to_nhwc(x), training=False)
    tensors = {n: to_onnx_layout(np.asarray(v), record[n]["permutation"])
               for n, v in zip(names, values if isinstance(values, list) else [values])}
    unaligned = {n: "no Keras layer (folded into a neighbour)" for n in record
                 if n not in tensors}
    return Capture(fmt, tensors, unaligned)


def capture_keras_saved_model(keras_path: Path, saved_model: Path, x: np.ndarray,
                              fmt: str = "tf_savedmodel") -> Capture:
    """A SavedModel exported from the Keras artifact: the Keras model's layers, with the
    final outputs taken from the SavedModel after checking that both compute the same."""
    capture = capture_keras(keras_path, x, fmt)
    _check_against_saved_model(capture.tensors, saved_model, x)
    return capture


class GraphMismatchError(RuntimeError):
    """The graph parity reads (onnx2tf's rebuilt, or the Keras model) does not compute what
    the SavedModel artifact computes."""


def capture_tf(onnx_path: Path, saved_model: Path, x: np.ndarray, calibration_images
               ) -> Capture:
    """onnx2tf's TF graph (the one its SavedModel is saved from), every mapped layer exposed.

    The SavedModel on disk keeps no layer structure, so the graph is rebuilt
    by the same onnx2tf call without saving; ``parity`` checks that its final
    output equals the SavedModel artifact's.
    """
    import tempfile

    from converters.tf_export import build_tf_keras_graph

    with tempfile.TemporaryDirectory() as tmp:  # TensorFlow loaded quietly, then tf_keras
        model, tensor_map = build_tf_keras_graph(onnx_path, Path(tmp) / "work", calibration_images)
    import tf_keras

    layers = {layer.name: layer for layer in model.layers}
    names = [n for n, r in tensor_map.items() if r["tf_layer"] in layers]
    outputs = [_layer_output(layers[tensor_map[n]["tf_layer"]], tensor_map[n]) for n in names]
    probe = tf_keras.Model(model.inputs, outputs)
    values = probe(to_nhwc(x), training=False)
    values = values if isinstance(values, (list, tuple)) else [values]
    tensors = {n: to_onnx_layout(np.asarray(v), tensor_map[n]["permutation"])
               for n, v in zip(names, values)}
    _check_against_saved_model(tensors, saved_model, x)
    return Capture("tf_savedmodel", tensors,
                   {n: "no TF layer" for n in tensor_map if n not in tensors})


def _layer_output(layer, record: dict):
    """The tensor ``record`` names: the layer's output, or its numbered one where the layer
    has several (a ``tf.split`` gives a list; fasternet's partial convolution splits)."""
    output = layer.output
    if isinstance(output, (list, tuple)):
        return output[record.get("tf_output", 0)]
    return output


def _check_against_saved_model(tensors: dict[str, np.ndarray], saved_model: Path,
                               x: np.ndarray) -> None:
    """Replace the rebuilt graph's outputs by the artifact's own, after checking they agree
    as parity's fp32 bar has two runs of one graph agree (SNR and cosine): a bound on the
    max error relative to the largest logit read regnet_y_16gf's rebuilt graph, 1.7e-3 off
    on logits whose fp32 round-off in PyTorch itself is 4.1 of 718, as another graph."""
    from converters.parity.metrics import diff_tensors
    from converters.runners import RunnerSpec
    from converters.runners.tf_runner import SavedModelRunner
    from converters.tolerance import DEFAULT_POLICY

    runner = SavedModelRunner(RunnerSpec("tf_savedmodel", str(saved_model),
                                         input_permutation=NCHW_TO_NHWC))
    with runner:
        out = runner.infer({"input": x})
    tol = DEFAULT_POLICY.for_("", "fp32").tensors
    for name, value in out.items():
        rebuilt = tensors.get(name)
        if rebuilt is None:
            raise GraphMismatchError(f"the graph behind {saved_model.name} has no output {name!r}")
        d = diff_tensors(value, rebuilt, name=name, module="", op="", depth=0, tol=tol)
        if not d.passed:
            raise GraphMismatchError(f"the graph behind {saved_model} differs from it: max "
                                     f"{d.max_abs:.2e}, SNR {d.snr_db:.1f} dB")
        tensors[name] = value
