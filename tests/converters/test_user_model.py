"""A user's own model (tests/fixtures/user_model.py): converted through the command line
from a file and a checkpoint, passing agreement and per-layer parity in every format; the
ways a model file, factory or checkpoint can be wrong, each one line and exit 2; and the
Python API taking an nn.Module."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from converters.__main__ import main
from tests.conftest import REPO, run_cli
from tests.fixtures.user_model import tiny_net
from zoo.entry import imagenet_preprocessing

TARGET = "tests/fixtures/user_model.py:tiny_net"
FORMATS = {"onnx", "tf_savedmodel", "tflite_fp32", "tflite_fp16", "keras"}


def _checkpoint(tmp_path: Path, num_classes: int = 5) -> Path:
    torch.manual_seed(1)
    model = tiny_net(num_classes=num_classes)
    with torch.no_grad():  # trained-looking BN statistics, not the 0/1 of a fresh layer
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "ckpt.pth"
    torch.save(model.state_dict(), path)
    return path


def test_user_model_converts_and_passes_agreement_and_parity(tmp_path):
    ckpt = _checkpoint(tmp_path)
    proc = run_cli("converters", "convert", TARGET, "--weights", str(ckpt), "--input-size",
                   "32", "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = tmp_path / "out" / "user_model-tiny_net"  # file stem + factory
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = manifest["entry"]
    # the fine-tuned head's 5 classes read from the checkpoint, not the factory's 10
    assert entry["source"] == "user" and entry["num_classes"] == 5
    assert entry["builder"] == f"{REPO / 'tests/fixtures/user_model.py'}:tiny_net"
    assert manifest["input_spec"]["shape"] == [-1, 3, 32, 32]
    assert manifest["input_spec"]["preprocessing"]["resize_size"] == 37  # 32 / 0.875
    assert manifest["weights"]["location"] == str(ckpt.resolve())
    agreement = {a["artifact"]: a for a in manifest["agreement"]}
    assert FORMATS <= set(agreement) and all(a["passed"] for a in agreement.values())
    for fmt in FORMATS - {"tflite_fp16"}:
        assert agreement[fmt]["max_abs_err"] <= 1e-4 and agreement[fmt]["top1_agreement"] == 1
    reports = [json.loads(p.read_text()) for p in (folder / "parity").glob("*.json")]
    pairs = {(r["reference"], r["test"]): r for r in reports}
    assert ("pytorch", "onnx") in pairs and {t for _, t in pairs} >= FORMATS
    for r in pairs.values():
        assert r["passed"] and not r["error"] and r["n_aligned"] > 0, r["test"]
    assert pairs[("pytorch", "onnx")]["worst"]["snr_db"] > 80


def _one_error_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if not ln.startswith("  ... ")]
    assert len(err) == 1, err
    return err[0]


def test_checkpoint_that_does_not_fit_names_the_keys(tmp_path, capsys):
    bad = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3), "fc.weight": torch.zeros(5, 8)}, bad)
    assert main(["convert", TARGET, "--weights", str(bad), "--out", str(tmp_path)]) == 2
    line = _one_error_line(capsys)
    for words in ("does not fit", "missing keys (stem.0.weight", "1 unexpected keys (conv.weight)"):
        assert words in line, line
    assert not (tmp_path / "user_model-tiny_net").exists()


@pytest.mark.parametrize("target, words", [
    ("tests/fixtures/no_such_file.py:tiny_net", "no_such_file.py does not exist"),
    ("tests/fixtures/user_model.py:nothere", "has no factory 'nothere' (its functions and "
                                             "classes: EluNet, HugeHeadNet, TinyNet, WideHeadNet, "
                                             "broken_net"),
    ("tests/fixtures/user_model.py:broken_net", "broken_net raised RuntimeError: the factory "
                                                "failed on purpose"),
    ("tests/fixtures/user_model.py:", "give the model as path/to/file.py:factory"),
])
def test_bad_model_file_or_factory_is_one_line(tmp_path, capsys, target, words):
    assert main(["convert", target, "--out", str(tmp_path)]) == 2
    assert words in _one_error_line(capsys)
    assert not any(tmp_path.iterdir())


def test_preprocessing_flags_are_for_user_models_only(tmp_path, capsys):
    assert main(["convert", "resnet18", "--input-size", "32", "--out", str(tmp_path)]) == 2
    assert "--input-size: only for your own model" in _one_error_line(capsys)


def test_fixed_head_factory_gets_the_checkpoints_head(tmp_path):
    from zoo.build import build_model
    from zoo.sources.user import user_entry

    ckpt = _checkpoint(tmp_path, num_classes=3)
    entry = user_entry("tests/fixtures/user_model.py:fixed_head_net", weights=str(ckpt),
                       preprocessing=imagenet_preprocessing(32))
    assert entry.num_classes == 3 and not entry.builder_kwargs  # it takes no num_classes
    model, source = build_model(entry, weights=str(ckpt))
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 3) and source.kind == "file"
    asked = user_entry("tests/fixtures/user_model.py:tiny_net", num_classes=7)
    assert asked.builder_kwargs == {"num_classes": 7}
    assert build_model(asked, weights="random:2")[0](torch.zeros(1, 3, 64, 64)).shape == (1, 7)


def test_python_api_converts_a_module_and_parity_runs_from_the_folder(tmp_path):
    from converters.parity.run import run_parity
    from converters.pipeline import ConvertOptions, convert_model

    torch.manual_seed(0)
    module = tiny_net(num_classes=4)
    manifest = convert_model(module, ConvertOptions(out_root=tmp_path, formats=("onnx",)),
                             log=lambda _: None, name="my net",
                             preprocessing=imagenet_preprocessing(48))
    folder = tmp_path / "my-net"
    assert manifest.entry.source == "module" and (folder / "my-net.onnx").is_file()
    assert manifest.input_spec["shape"] == [-1, 3, 48, 48] and manifest.agreement[0].passed
    [report] = run_parity(folder, pairs=(("pytorch", "onnx"),), model=module)
    assert report.passed and len(report.diffs) > 0
    [report] = run_parity(folder, pairs=(("pytorch", "onnx"),))  # nothing to rebuild it from
    assert not report.passed and "in-memory module" in report.error


def test_tflite_parity_compares_a_folded_batchnorm_as_the_batchnorm(tmp_path):
    """MaxViT's MBConv keeps BatchNormalization after its convs in the ONNX graph, and
    TFLite's converter folds it into the Conv, whose tensor keeps the Conv's name alone but
    holds the BN's output. Parity compares it with the BN (saying why the Conv is
    unaligned); compared with the Conv it read as a layer error (66 dB here, eps 1e-3;
    5.7 dB on maxvit_t). A tiny MaxViT, random weights, the Keras path (onnx2tf fails on
    it)."""
    import torchvision

    from converters.parity.run import run_parity
    from converters.pipeline import ConvertOptions, convert_model

    torch.manual_seed(0)
    module = torchvision.models.MaxVit(
        input_size=(64, 64), stem_channels=8, partition_size=4, block_channels=[16, 32],
        block_layers=[1, 1], head_dim=8, stochastic_depth_prob=0.0, num_classes=10).eval()
    convert_model(module, ConvertOptions(out_root=tmp_path, tf_converter="keras",
                                         formats=("onnx", "tf_savedmodel", "tflite_fp32")),
                  log=lambda _: None, name="maxvit", preprocessing=imagenet_preprocessing(64))
    [report] = run_parity(tmp_path / "maxvit", pairs=(("onnx", "tflite_fp32"),))
    assert report.passed, (report.first_divergent, report.worst)
    folded = {name: why for name, why in report.unaligned.items()
              if "folded the BatchNormalization" in why}
    assert "/stem/stem.0/stem.0.0/Conv_output_0" in folded, report.unaligned
    bn = {d.name: d for d in report.diffs}["/stem/stem.0/stem.0.1/BatchNormalization_output_0"]
    assert bn.snr_db > 100  # the folded tensor against the BN: fp32 rounding only


def test_tflite_parity_reads_a_batchnorm_after_a_concat_as_itself(tmp_path):
    """DenseNet's norm1 normalises the Concat of the earlier layers' features: TFLite folds
    nothing into a Concat, so the Concat's tensor is the Concat and never stands in for the
    BN (taken for it, densenet121 failed TFLite parity at every norm1, 0.8-10 dB, while
    its logits agreed to 1.4e-5). A tiny DenseNet, random weights."""
    import torchvision

    from converters.parity.capture import folded_readers
    from converters.parity.run import run_parity
    from converters.pipeline import ConvertOptions, convert_model

    torch.manual_seed(0)
    module = torchvision.models.DenseNet(growth_rate=8, block_config=(2, 2),
                                         num_init_features=16, bn_size=2, num_classes=10).eval()
    convert_model(module, ConvertOptions(out_root=tmp_path, formats=("onnx", "tflite_fp32")),
                  log=lambda _: None, name="densenet", preprocessing=imagenet_preprocessing(64))
    readers = folded_readers(tmp_path / "densenet" / "densenet.onnx")
    assert not [t for t in readers if "Concat" in t], readers
    assert "/features/conv0/Conv_output_0" in readers  # conv0 -> norm0: folded, read as BN
    [report] = run_parity(tmp_path / "densenet", pairs=(("onnx", "tflite_fp32"),))
    assert report.passed, (report.first_divergent, report.worst)
    diffs = {d.name: d for d in report.diffs}
    concats = [n for n in diffs if "Concat" in n]
    assert concats and all(diffs[n].snr_db > 100 for n in concats)  # compared as themselves
    norm1 = [n for n in (*diffs, *report.unaligned)
             if n.endswith("norm1/BatchNormalization_output_0")]
    assert norm1, report.unaligned
    for name in norm1:  # fused forward (unaligned, saying so) or compared as itself
        assert (name in diffs and diffs[name].snr_db > 100) or (
            "folded" not in report.unaligned[name]), (name, report.unaligned.get(name))


class LayerScaleNet(torch.nn.Module):
    """ConvNeXt's block end: a 1x1 Conv, then a per-channel layer scale of 1e-6 (timm's
    init), then the residual Add; before the Conv, NF-Net's scale of an activation."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc2 = torch.nn.Conv2d(8, 8, 1)
        self.gamma = torch.nn.Parameter(torch.full((1, 8, 1, 1), 1e-6))
        self.head = torch.nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        y = y + self.fc2(torch.relu(y) * 0.98) * self.gamma
        return self.head(y.mean((2, 3)))


def test_tflite_parity_reads_a_conv_with_its_layer_scale_folded_in(tmp_path):
    """TFLite may multiply a Conv's following per-channel Mul into the Conv's weights: the
    Conv's tensor then holds the Mul's output and the Mul has none. Read as the Conv's own
    output, timm's convnext_zepto_rms failed TFLite parity at 0.0 dB on every mlp.fc2
    (its tensor named ``mlp.fc2.Conv_1/convolution1`` alone). This small model keeps the
    Mul's name on the fused tensor, which parity reads as the Mul either way."""
    from converters.parity.capture import _folded_into, folded_readers

    torch.manual_seed(0)
    report = _tflite_parity(LayerScaleNet().eval(), tmp_path, "layerscale")
    readers = folded_readers(tmp_path / "layerscale" / "layerscale.onnx")
    # the layer scale after the Conv; not the scale before it (TFLite folds that one
    # forward: read as it, nf_regnet_b1's activations failed at 34 dB)
    assert readers == {"/fc2/Conv_output_0": "/Mul_1_output_0"}, readers
    assert report.passed, (report.first_divergent, report.worst)
    assert {d.name: d for d in report.diffs}["/Mul_1_output_0"].snr_db > 100
    # convnext_zepto_rms's case: the Mul has no tensor, the Conv's holds its output
    records = {"/fc2/Conv_output_0": {"tf_layer": "fc2.Conv_1"},
               "/Mul_1_output_0": {"tf_layer": "Mul-1_1"}}
    assert _folded_into("/fc2/Conv_output_0", records, {"fc2.Conv_1": (78, [])},
                        readers) == "/Mul_1_output_0"
    assert _folded_into("/fc2/Conv_output_0", records, {"fc2.Conv_1": (78, []),
                                                       "Mul-1_1": (79, [])},
                        readers) == "/fc2/Conv_output_0"


def test_fp16_file_keeps_a_folded_layer_scale_in_float32_and_passes(tmp_path):
    """timm's layer scales start at 1e-6, below float16's normal range (6.1e-5); TFLite
    folds them into the Conv before, whose weights float16 would then hold as subnormals of
    a bit or two (parity failed there: convnext_zepto_rms, fastvit_t8, efficientformer_l1
    ... with random weights). The fp16 file keeps that Conv's weights in float32
    (``converters.tflite_fp16``): parity passes and the manifest names them; at a scale
    training leaves (0.5) nothing is kept."""
    from converters.manifest import load_manifest

    torch.manual_seed(0)
    model = LayerScaleNet().eval()
    report = _tflite_parity(model, tmp_path, "tiny_scale", fmt="tflite_fp16")
    assert report.passed, (report.first_divergent, report.cause)
    kept = load_manifest(tmp_path / "tiny_scale").artifact("tflite_fp16").fp32_kept
    assert any("fc2" in k and "(8x1x1x8): float16 misses it by" in k for k in kept), kept
    assert {d.name: d for d in report.diffs}["/Mul_1_output_0"].snr_db > 60
    with torch.no_grad():
        model.gamma.fill_(0.5)
    report = _tflite_parity(model, tmp_path, "trained_scale", fmt="tflite_fp16")
    assert report.passed and report.cause == "", (report.first_divergent, report.cause)
    assert load_manifest(tmp_path / "trained_scale").artifact("tflite_fp16").fp32_kept == []


def _tflite_parity(model: torch.nn.Module, tmp_path, name: str, fmt: str = "tflite_fp32"):
    """``model`` through the Keras path to TFLite ``fmt``, and its ONNX-vs-TFLite parity."""
    from converters.parity.run import run_parity
    from converters.pipeline import ConvertOptions, convert_model

    convert_model(model, ConvertOptions(out_root=tmp_path, tf_converter="keras",
                                        formats=("onnx", "keras", fmt)),
                  log=lambda _: None, name=name, preprocessing=imagenet_preprocessing(32))
    [report] = run_parity(tmp_path / name, pairs=(("onnx", fmt),))
    return report


class DilatedBNNet(torch.nn.Module):
    """SKNet's second path: a dilated Conv, then BatchNorm and ReLU. TFLite runs the Conv as
    SpaceToBatch, Conv, BatchToSpace and cannot fold the BN into it: the BN stays a Mul and
    an Add, the Add fused forward with the ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=2, dilation=2, bias=False)
        self.bn = torch.nn.BatchNorm2d(8)
        self.head = torch.nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def test_tflite_parity_reads_a_dilated_conv_apart_from_the_bn_after_it(tmp_path):
    """Read as a BN folded into the Conv (the Conv's tensor taken for the BN's output),
    timm's skresnet18 failed TFLite parity at -0.7 dB on its first dilated path's BN. A BN
    that TFLite names anywhere is not folded: it is unaligned (fused forward, saying so)
    and the Conv is compared as itself."""
    torch.manual_seed(0)
    model = DilatedBNNet().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
    report = _tflite_parity(model, tmp_path, "dilated")
    assert report.passed, (report.first_divergent, report.worst)
    diffs = {d.name: d for d in report.diffs}
    assert diffs["/conv/Conv_output_0"].snr_db > 100
    assert "fused into a following" in report.unaligned["/bn/BatchNormalization_output_0"]


class PosEmbedBNNet(torch.nn.Module):
    """Visformer's patch embedding: a Conv, a BN, then a learned position embedding added.
    TFLite folds the BN's scale into the Conv and adds its shift together with the
    embedding in one ADD, named after the BN first."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Conv2d(3, 8, 4, stride=4, bias=False)
        self.norm = torch.nn.BatchNorm2d(8)
        self.pos_embed = torch.nn.Parameter(torch.randn(1, 8, 8, 8) * 0.02)
        self.head = torch.nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.proj(x)) + self.pos_embed
        return self.head((y * torch.sigmoid(y)).mean((2, 3)))


def test_tflite_parity_reads_a_bn_shared_between_a_conv_and_a_later_add(tmp_path):
    """Read by the first layer a tensor names, the ADD holding BN shift + position embedding
    was compared as the BN (timm's visformer_tiny failed TFLite parity at it, and at the
    Conv holding only the BN's scale once a BN named anywhere counted as not folded). The
    tensor belongs to the latest layer it names; the Conv and the BN are unaligned."""
    torch.manual_seed(0)
    model = PosEmbedBNNet().eval()
    with torch.no_grad():
        model.norm.running_mean.uniform_(-1, 1)
        model.norm.running_var.uniform_(0.5, 2)
        model.norm.bias.uniform_(-1, 1)
    report = _tflite_parity(model, tmp_path, "posembed")
    assert report.passed, (report.first_divergent, report.worst)
    diffs = {d.name: d for d in report.diffs}
    assert diffs["/Add_output_0"].snr_db > 100
    assert "fused into a following" in report.unaligned["/norm/BatchNormalization_output_0"]
    assert "holds part of the BatchNormalization" in report.unaligned["/proj/Conv_output_0"]


class PartialConvNet(torch.nn.Module):
    """FasterNet's partial convolution: the channels split in two, a 3x3 Conv on the first
    part, the parts concatenated again. onnx2tf makes the Split one ``tf.split`` layer whose
    output is a list of two tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.partial = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.head = torch.nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, rest = torch.split(self.stem(x), [4, 4], dim=1)
        y = torch.cat((self.partial(first), rest), 1)
        return self.head(torch.relu(y).mean((2, 3)))


def test_savedmodel_parity_reads_each_output_of_a_split(tmp_path):
    """onnx2tf's SavedModel is compared through its rebuilt graph, one probe output per ONNX
    tensor: each output of a Split is its own number of the ``tf.split`` layer's list (taken
    as the list, timm's fasternet_t0 ended in 'setting an array element with a sequence')."""
    from converters.parity.run import run_parity
    from converters.pipeline import ConvertOptions, convert_model

    torch.manual_seed(0)
    convert_model(PartialConvNet().eval(),
                  ConvertOptions(out_root=tmp_path, tf_converter="onnx2tf",
                                 formats=("onnx", "tf_savedmodel")),
                  log=lambda _: None, name="partial", preprocessing=imagenet_preprocessing(32))
    [report] = run_parity(tmp_path / "partial", pairs=(("onnx", "tf_savedmodel"),))
    assert report.passed and not report.error, (report.error, report.first_divergent)
    diffs = {d.name: d for d in report.diffs}
    split = [n for n in diffs if "Split" in n]
    assert len(split) == 2, sorted(diffs)
    assert all(diffs[n].snr_db > 100 for n in split)


class CancellingNet(torch.nn.Module):
    """Two convolutions whose weights differ by 0.1%, subtracted: their difference is what
    fp16's rounding of the weights (0.05%) leaves of it, in any fp16 file."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(3, 8, 3, padding=1)
        with torch.no_grad():
            self.b.weight.copy_(self.a.weight * (1 + 1e-3 * torch.randn_like(self.a.weight)))
            self.b.bias.copy_(self.a.bias)
        self.head = torch.nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(100 * (self.a(x) - self.b(x))).mean((2, 3)))


def test_fp16_parity_bars_drop_to_the_rounding_floor_of_the_weights(tmp_path):
    """Where rounding the ONNX graph's weights to fp16 alone leaves a tensor under the flat
    30 dB bar (here ~10 dB, as random-weight regnet_x_400mf's last stage at ~18 dB), the
    TFLite fp16 file is held to that floor less 9.5 dB, and the report says so; an fp32 file
    to fp32's own floor where a module's output has one."""
    torch.manual_seed(0)
    net = CancellingNet().eval()
    report = _tflite_parity(net, tmp_path, "cancel", fmt="tflite_fp16")
    assert report.passed, (report.first_divergent, report.floor)
    sub = {d.name: d for d in report.diffs}["/Sub_output_0"]
    assert sub.snr_db < 20 and sub.floor_snr_db < 20, sub  # under the flat bar, both
    assert abs(sub.snr_db - sub.floor_snr_db) < 3, sub  # the file is as close as rounding
    assert report.floor.startswith("3 tensors under the flat 30 dB pass on fp16's own"), \
        report.floor
    from converters.parity.run import run_parity

    # fp32's floor is PyTorch's fp32 run against its fp64 one, at each module's output; the
    # Sub is no module's, so its flat 80 dB bar holds, and the Keras file's 76.6 dB fails it
    [fp32] = run_parity(tmp_path / "cancel", pairs=(("onnx", "keras"),), model=net)
    diffs = {d.name: d for d in fp32.diffs}
    assert diffs["/a/Conv_output_0"].floor_snr_db > 100, diffs["/a/Conv_output_0"]
    sub32 = diffs["/Sub_output_0"]
    assert sub32.floor_snr_db is None and 70 < sub32.snr_db < 80 and not fp32.passed, sub32
    # an in-memory module parity is not given cannot run in fp64: the flat bars, saying why
    [flat] = run_parity(tmp_path / "cancel", pairs=(("onnx", "keras"),))
    assert flat.floor.startswith("flat bars (no fp32 rounding floor: pytorch: UserModelError")
    assert all(d.floor_snr_db is None for d in flat.diffs)
