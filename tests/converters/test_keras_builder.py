"""converters.keras: tiny models for every builder step, then the whole catalog (slow)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras_builder = pytest.importorskip("converters.keras")  # first: loads triton before TensorFlow
torch = pytest.importorskip("torch")
nn = torch.nn

from converters.keras import (count_weights, feature_extractor,  # noqa: E402
                              module_path_of_layer, onnx_to_keras)
from converters.keras.layout import channels_last, plan_reshape  # noqa: E402
from converters.keras.naming import ModulePaths  # noqa: E402
from converters.onnx_export import export_onnx  # noqa: E402
from converters.runners.base import to_nhwc  # noqa: E402
from tests.support.keras_models import assert_fresh_process_outputs, hand_built_onnx  # noqa: E402

ATOL = 1e-4


# -- tiny models: each covers a family of ops ---------------------------------
class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU())
        self.expand1x1 = nn.Conv2d(squeeze, expand, 1)
        self.expand3x3 = nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        return torch.cat([self.expand1x1(x), self.expand3x3(x)], 1)


class TinyNet(nn.Module):
    """Channel Gather/Unsqueeze (Inception's transform_input), conv/BN, concat, pools, NCHW flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            Fire(8, 4, 8), nn.MaxPool2d(3, 2, padding=1),
            nn.AvgPool2d(3, 1, padding=1, count_include_pad=False),
            nn.Conv2d(16, 12, 3, padding=2, dilation=2), nn.ReLU())
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(12 * 8 * 8, 32), nn.ReLU(),
                                        nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([torch.unsqueeze(x[:, i], 1) * (0.5 + i) - 0.1 * i for i in range(3)], 1)
        return self.classifier(self.features(x))


class SqueezeExcite(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(ch, ch // 2, 1), nn.Conv2d(ch // 2, ch, 1)
        self.act = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = nn.functional.adaptive_avg_pool2d(x, 1)
        return x * self.act(self.fc2(torch.relu(self.fc1(s))))


def conv_bn(cin: int, cout: int, k: int, act: nn.Module, **kw) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False, **kw),
                         nn.BatchNorm2d(cout), act)


class DepthwiseNet(nn.Module):
    """Depthwise (x1, x2 multiplier) and grouped convs, ReLU6/Hardswish/SiLU, SE, residual, GAP."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 16, 3, nn.Hardswish(), stride=2)
        self.block = nn.Sequential(conv_bn(16, 32, 1, nn.ReLU6()),
                                   conv_bn(32, 32, 3, nn.Hardswish(), groups=32),
                                   SqueezeExcite(32), conv_bn(32, 16, 1, nn.Identity()))
        self.widen = conv_bn(16, 32, 3, nn.ReLU6(), stride=2, groups=16)
        self.grouped = conv_bn(32, 32, 3, nn.SiLU(), groups=4)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.grouped(self.widen(x + self.block(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class Blur(nn.Module):
    """TResNet's anti-aliasing: a fixed depthwise 3x3 binomial filter in a non-persistent
    buffer, which the ONNX export makes a Constant node rather than an initializer."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        f = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("filt", (f[:, None] * f[None, :] / 16)[None, None].repeat(
            ch, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(x, self.filt, groups=x.shape[1])


class PoolNet(nn.Module):
    """ceil_mode max/avg pools on odd sizes, count_include_pad both ways, asymmetric ZeroPad2d,
    and TResNet's ReflectionPad2d + blur filter."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.ReflectionPad2d((1, 2, 0, 1)), Blur(8),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.AvgPool2d(3, 2, padding=1, ceil_mode=True),
            nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False),
            nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(),
            nn.MaxPool2d(2, 2, padding=1, ceil_mode=True))
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean([2, 3]))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.size()
    x = torch.transpose(x.view(b, groups, c // groups, h, w), 1, 2).contiguous()
    return x.view(b, -1, h, w)


class ShuffleBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.branch2 = nn.Sequential(conv_bn(ch // 2, ch // 2, 1, nn.ReLU()),
                                     conv_bn(ch // 2, ch // 2, 3, nn.Identity(), groups=ch // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat((x1, self.branch2(x2)), 1), 2)


class ShuffleNet(nn.Module):
    """chunk (Slice) and channel shuffle (Shape/Gather/Reshape/Transpose on a dynamic batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = conv_bn(3, 16, 3, nn.ReLU(), stride=2)
        self.stage = nn.Sequential(ShuffleBlock(16), ShuffleBlock(16))
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.stage(self.conv1(x)).mean([2, 3]))


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(ch, ch, 7, padding=3, groups=ch)
        self.norm = nn.LayerNorm(ch, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(ch, 4 * ch), nn.GELU(), nn.Linear(4 * ch, ch))
        self.layer_scale = nn.Parameter(torch.rand(ch, 1, 1) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mlp(self.norm(self.dwconv(x).permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        return x + self.layer_scale * y


class TinyConvNeXt(nn.Module):
    """Transposes as layout relabels, LayerNorm, Linear on NHWC (MatMul + Add), erf GELU, layer scale."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 4, stride=4), LayerNorm2d(16, eps=1e-6))
        self.block = CNBlock(16)
        self.head = nn.Sequential(LayerNorm2d(16, eps=1e-6), nn.Flatten(1), nn.Linear(16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(nn.functional.adaptive_avg_pool2d(self.block(self.stem(x)), 1))


class MiscNet(nn.Module):
    """Supported ops no catalog model uses: LeakyReLU, Tanh, Clip, Split, Sub, channel mean,
    Squeeze, GroupNorm (ShViT's, one group and four) and InstanceNorm2d, as InstanceNormalization,
    a ``padding="same"`` convolution of even kernel (auto_pad=SAME_UPPER)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.norms = nn.Sequential(nn.GroupNorm(1, 12), nn.GroupNorm(4, 12),
                                   nn.InstanceNorm2d(12, affine=True),
                                   nn.Conv2d(12, 12, 4, padding="same", groups=12))  # ConvMixer
        self.act = nn.LeakyReLU(0.1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b, c = torch.split(self.act(self.norms(self.conv(x))), [4, 4, 4], dim=1)
        y = torch.tanh(a) - b.clamp(-0.5, 0.7) + c.mean(1, keepdim=True)
        y = torch.cat([y, torch.sigmoid(y)], 1)
        return self.fc(nn.functional.adaptive_max_pool2d(y, 1).squeeze(3).squeeze(2))


class ResizeNet(nn.Module):
    """Resize as PyTorch exports it: nearest up and down by integers (HRNet's, EfficientFormerV2's
    upsampling), bilinear to a size up and down (CoaT's), bicubic (CrossViT's) and bilinear
    with align_corners; 1-D convolutions on the
    flattened map, depthwise and dilated (CoaT's, EfficientViM's)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.seq = nn.Conv1d(8, 8, 3, padding=1, groups=8)  # depthwise, on the 64 pixels
        self.seq2 = nn.Conv1d(8, 8, 2, dilation=2, padding=1)
        self.fc = nn.Linear(48, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)  # 8 x 8
        y = y + self.seq2(self.seq(y.flatten(2))).view_as(y)
        interpolate = nn.functional.interpolate
        parts = (self.up(y), interpolate(y, scale_factor=0.5, mode="nearest"),
                 interpolate(y, size=(11, 13), mode="bilinear", align_corners=False),
                 interpolate(y, size=(5, 3), mode="bilinear", align_corners=False),
                 interpolate(y, size=(7, 12), mode="bicubic", align_corners=False),
                 interpolate(y, size=(11, 4), mode="bilinear", align_corners=True))
        return self.fc(torch.cat([p.amax((2, 3)) for p in parts], 1))


class DecoderNet(nn.Module):
    """Transposed convolutions as segmentation decoders and LowFormer use them: Keras' own
    (one group, cropped pads) and PyTorch's definition (depthwise, grouped, dilated, with
    output padding); a convolution both strided and dilated (SKNet's); nn.Unfold, whose
    export gathers with 2-D indices (TNT's pixel embedding)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(3, 8, 3, stride=2, padding=2, dilation=2)
        self.plain = nn.ConvTranspose2d(8, 6, 2, stride=2)
        self.cropped = nn.ConvTranspose2d(8, 6, 4, stride=2, padding=1, bias=False)
        self.depthwise = nn.ConvTranspose2d(8, 8, 4, stride=2, padding=1, groups=8)
        self.grouped = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1,
                                          groups=2, dilation=1)
        self.dilated = nn.ConvTranspose2d(8, 4, 3, stride=1, padding=2, dilation=2)
        self.unfold = nn.Unfold(2, stride=2)
        self.fc = nn.Linear(60, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down(x)
        parts = (self.plain(y), self.cropped(y), self.depthwise(y), self.grouped(y),
                 self.dilated(y))
        pooled = [p.amax((2, 3)) + p.mean((2, 3)) for p in parts]
        return self.fc(torch.cat([*pooled, self.unfold(y).amax(2)], 1))


TINY = {"tiny": (TinyNet, 32), "depthwise": (DepthwiseNet, 32), "pools": (PoolNet, 33),
        "shuffle": (ShuffleNet, 32), "convnext": (TinyConvNeXt, 32), "misc": (MiscNet, 16),
        "resize": (ResizeNet, 16), "decoder": (DecoderNet, 15)}


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial BN statistics and affine terms, so BN conversion errors show."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            for t, lo in ((m.running_mean, -0.5), (m.weight, 0.5), (m.bias, -0.5)):
                t.data = torch.rand(t.shape, generator=gen) + lo
            m.running_var.data = torch.rand(m.running_var.shape, generator=gen) + 0.5
    return model.eval()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = {}
    for i, (name, (cls, size)) in enumerate(TINY.items()):
        torch.manual_seed(i)
        model = _randomize(cls(), i)
        path = export_onnx(model, input_shape=(1, 3, size, size),
                           path=tmp_path_factory.mktemp("onnx") / f"{name}.onnx")
        out[name] = (model, path, size)
    return out


def _nchw_input(size: int, batch: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32)


def _keras_logits(model: Any, x_nchw: np.ndarray) -> np.ndarray:
    return np.asarray(model(x_nchw.transpose(0, 2, 3, 1), training=False))


def _torch_logits(model: nn.Module, x_nchw: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x_nchw)).numpy()


def _torch_counts(model: nn.Module) -> tuple[int, int]:
    params = sum(p.numel() for p in model.parameters())
    stats = sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    return params, stats


# -- fast tests ---------------------------------------------------------------
@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("batch", [1, 3])
def test_logits_match_torch(tiny: dict, name: str, batch: int) -> None:
    model, path, size = tiny[name]
    x = _nchw_input(size, batch)
    conversion = onnx_to_keras(path)
    assert conversion.model.input_shape == (None, size, size, 3)
    got, want = _keras_logits(conversion.model, x), _torch_logits(model, x)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= ATOL


class ParameterMath(nn.Module):
    """Computation on parameters alone, folded at build time: NF-Net's weight standardisation
    (``F.batch_norm`` in training mode on the conv weight), ConViT's sigmoid gate,
    MaxViT-rmlp's and ViT-srelpos' relative-position MLPs (Gemm, MatMul with its bias and
    GELU on a coordinate table), a one-hot
    lookup of clamped indices (GCViT's, NesT's)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 3, 3, 3))
        self.gain = nn.Parameter(torch.rand(8) + 0.5)
        self.gate = nn.Parameter(torch.randn(8))
        self.register_buffer("coords", torch.randn(9, 2))  # Gemm
        self.register_buffer("coords3", torch.randn(1, 9, 2))  # MatMul with its bias fused
        self.mlp3 = nn.Linear(2, 8)
        self.register_buffer("index", torch.tensor([0, 3, -1, 9, 2]))
        self.mlp = nn.Sequential(nn.Linear(2, 16), nn.GELU(), nn.Linear(16, 8))
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = nn.functional.batch_norm(self.weight.reshape(1, 8, -1), None, None, weight=self.gain,
                                     training=True, momentum=0.0, eps=1e-5).reshape_as(self.weight)
        y = nn.functional.conv2d(x, w, padding=1) * torch.sigmoid(self.gate).view(1, 8, 1, 1)
        lookup = nn.functional.one_hot(self.index.clamp(0, 7), 8).float().sum(0)  # (8,)
        bias = (self.mlp(self.coords).mean(0) + self.mlp3(self.coords3)[0, 1] + lookup)
        bias = bias.view(1, 8, 1, 1)
        return self.fc((y + bias).mean((2, 3)))


def test_parameter_math_folds_at_build_time(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ParameterMath().eval()
    path = export_onnx(model, input_shape=(1, 3, 8, 8), path=tmp_path / "params.onnx")
    x = _nchw_input(8, batch=3)
    got = _keras_logits(onnx_to_keras(path).model, x)
    assert np.abs(got - _torch_logits(model, x)).max() <= ATOL


@pytest.mark.parametrize("name", list(TINY))
def test_parameter_accounting(tiny: dict, name: str) -> None:
    model, path, _ = tiny[name]
    keras_model = onnx_to_keras(path).model
    params, stats = _torch_counts(model)
    assert count_weights(keras_model) == (params, stats)
    assert keras_model.count_params() == params + stats


@pytest.mark.parametrize("pool", [
    nn.MaxPool2d(3, 2, ceil_mode=True), nn.MaxPool2d(3, 2, padding=1),
    nn.MaxPool2d(2, 3, padding=1, ceil_mode=True),
    nn.AvgPool2d(3, 2, padding=1), nn.AvgPool2d(3, 2, padding=1, count_include_pad=False),
    nn.AvgPool2d(3, 2, padding=1, ceil_mode=True),
    nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False),
    nn.AvgPool2d(2, 2, ceil_mode=True), nn.AvgPool2d(4, 3, padding=2, ceil_mode=True),
], ids=repr)
@pytest.mark.parametrize("size", [9, 10])
def test_pooling_matches_torch(tmp_path: Path, pool: nn.Module, size: int) -> None:
    path = export_onnx(pool.eval(), input_shape=(1, 2, size, size), path=tmp_path / "pool.onnx")
    x = np.random.default_rng(1).standard_normal((2, 2, size, size)).astype(np.float32) - 2.0
    got = onnx_to_keras(path).model(x.transpose(0, 2, 3, 1))
    want = _torch_logits(pool, x)
    np.testing.assert_allclose(np.asarray(got).transpose(0, 3, 1, 2), want, atol=1e-5, rtol=0)


def test_layer_names_map_to_module_paths(tiny: dict) -> None:
    model, path, _ = tiny["tiny"]
    conversion = onnx_to_keras(path)
    assert conversion.layer_map["/features/features.0/Conv"] == "features.0.Conv"
    assert conversion.layer_map["/features/features.3/expand3x3/Conv"] == "features.3.expand3x3.Conv"
    modules = dict(model.named_modules())
    for layer in conversion.model.layers:
        if layer.weights:  # the layer's variables are exactly that module's parameters and buffers
            module = modules[module_path_of_layer(layer.name)]
            own = sum(t.numel() for n, t in [*module.named_parameters(recurse=False),
                                             *module.named_buffers(recurse=False)]
                      if n != "num_batches_tracked")
            assert own == layer.count_params(), layer.name
    names = {layer.name for layer in conversion.model.layers}
    assert set(conversion.layer_map.values()) <= names


def test_module_paths_from_torchscript_scopes() -> None:
    paths = ModulePaths(frozenset({"layer1.0.conv2.weight", "Mixed_5b.branch3x3_1.conv.weight"}))
    assert paths.of_node("/layer1/layer1.0/relu_1/Relu") == "layer1.0.relu"
    assert paths.of_node("/features/features.1/conv/conv.0/conv.0.0/Conv") == "features.1.conv.0.0"
    assert paths.of_node("/Mixed_5b/branch3x3_1/Relu") == "Mixed_5b.branch3x3_1"
    assert paths.of_node("/x/Conv", ("input", "layer1.0.conv2.weight")) == "layer1.0.conv2"
    assert paths.of_node("/Flatten") == ""


def test_reshape_layout_plans() -> None:
    nhwc = channels_last(4)
    flat_1x1 = plan_reshape((None, 8, 1, 1), nhwc, (0, 8))
    assert flat_1x1.before is None and flat_1x1.keras_shape == (8,)
    flat_map = plan_reshape((None, 8, 4, 4), nhwc, (0, 128))
    assert flat_map.before == (0, 1, 2, 3)  # PyTorch flattens C, H, W: back to NCHW first
    split = plan_reshape((None, 116, 28, 28), nhwc, (0, 2, 58, 28, 28))  # channel shuffle
    assert split.before is None and split.perm == (0, 3, 4, 1, 2)


def test_ops_pytorch_does_not_export(tmp_path: Path) -> None:
    """ONNX's default HardSigmoid (alpha 0.2) and GlobalMaxPool."""
    from onnx import helper

    path = hand_built_onnx(tmp_path / "hand.onnx", out_width=3, nodes=[
        helper.make_node("HardSigmoid", ["input"], ["h"], name="/act/HardSigmoid"),
        helper.make_node("GlobalMaxPool", ["h"], ["p"], name="/pool/GlobalMaxPool"),
        helper.make_node("Flatten", ["p"], ["logits"], name="/Flatten")])
    x = _nchw_input(4)
    got = _keras_logits(onnx_to_keras(path).model, x)
    np.testing.assert_allclose(got, np.clip(0.2 * x + 0.5, 0, 1).max(axis=(2, 3)), atol=1e-6)


def test_save_and_load_in_fresh_process(tiny: dict, tmp_path: Path) -> None:
    cases = {}
    for name, (model, onnx_path, size) in tiny.items():
        keras_path = tmp_path / f"{name}.keras"
        onnx_to_keras(onnx_path).model.save(keras_path)
        x = _nchw_input(size, seed=3)
        cases[name] = (keras_path, to_nhwc(x), _torch_logits(model, x))
    assert_fresh_process_outputs(cases, ATOL)


def test_fit_changes_backbone_kernels(tiny: dict) -> None:
    import keras

    model = onnx_to_keras(tiny["depthwise"][1]).model
    model.trainable = True
    watched = [model.get_layer(n) for n in ("stem.0.Conv", "block.1.0.Conv", "grouped.0.Conv")]
    before = [np.array(layer.weights[0]) for layer in watched]
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((8, 32, 32, 3)).astype(np.float32),
              rng.standard_normal((8, 10)).astype(np.float32), batch_size=4, epochs=1, verbose=0)
    for layer, old in zip(watched, before):
        assert np.abs(np.array(layer.weights[0]) - old).max() > 0, layer.name


@pytest.mark.parametrize("feature_layer, width", [("features", 12), ("classifier.2", 32)])
def test_feature_extractor(tiny: dict, feature_layer: str, width: int) -> None:
    model, path, size = tiny["tiny"]
    features = feature_extractor(onnx_to_keras(path), feature_layer)
    x = _nchw_input(size, batch=3)
    got = np.asarray(features(x.transpose(0, 2, 3, 1)))
    want = _torch_outputs(model, torch.from_numpy(x), feature_layer)[1]
    assert got.shape == (3, width)
    assert np.abs(got - want).max() <= ATOL


# -- the whole catalog ----------------------------------------------------------
def _catalog() -> list[str]:
    from zoo.registry import list_models

    return list_models()


def _used_counts(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """Parameters and BN statistics of the modules the eval forward runs (Inception's aux head does not)."""
    ran: set[nn.Module] = set()
    hooks = [m.register_forward_hook(lambda m, i, o: ran.add(m)) for m in model.modules()]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    params = sum(p.numel() for m in ran for p in m.parameters(recurse=False))
    stats = sum(b.numel() for m in ran for n, b in m.named_buffers(recurse=False)
                if n != "num_batches_tracked")
    return params, stats


def _torch_outputs(model: nn.Module, x: torch.Tensor, feature_layer: str
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Logits and the pooled output of ``feature_layer`` (cloned: DenseNet ReLUs it in place)."""
    captured = []
    module = dict(model.named_modules())[feature_layer]
    hook = module.register_forward_hook(lambda m, i, o: captured.append(o.clone()))
    with torch.no_grad():
        logits = model(x)
    hook.remove()
    features = captured[0].mean((2, 3)) if captured[0].ndim == 4 else captured[0]
    return logits.numpy(), features.numpy()


@pytest.mark.slow
@pytest.mark.parametrize("name", _catalog())
def test_catalog_model_converts(name: str, tmp_path: Path) -> None:
    import copy

    from zoo.build import build_model
    from zoo.meta import input_shape
    from zoo.registry import get_entry

    entry = get_entry(name)
    model, _ = build_model(name, weights="random")
    path = export_onnx(model, input_shape=input_shape(entry, 1), path=tmp_path / f"{name}.onnx")
    conversion = onnx_to_keras(path)
    x = np.random.default_rng(0).standard_normal(input_shape(entry, 2)).astype(np.float32)
    want = _torch_outputs(model, torch.from_numpy(x), entry.feature_layer)
    features = feature_extractor(conversion, entry)
    got = (_keras_logits(conversion.model, x), np.asarray(features(x.transpose(0, 2, 3, 1))))
    errors = [float(np.abs(g - w).max()) for g, w in zip(got, want)]
    if max(errors) <= ATOL:
        tolerances = [ATOL, ATOL]
    else:  # deep nets at fp32: allow twice PyTorch's own fp32 rounding (fp32 vs fp64)
        exact = _torch_outputs(copy.deepcopy(model).double(), torch.from_numpy(x).double(),
                               entry.feature_layer)
        tolerances = [max(ATOL, 2 * float(np.abs(w - e).max())) for w, e in zip(want, exact)]
    for what, err, tol in zip(("logits", "features"), errors, tolerances):
        assert err <= tol, f"{name} {what}: max abs error {err:.2e} > {tol:.2e}"
    assert features.output_shape == (None, entry.feature_dim)
    assert count_weights(conversion.model) == _used_counts(model, torch.from_numpy(x))
