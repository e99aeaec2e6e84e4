"""converters.keras on transformers: tiny attention blocks, then torchvision's ViT, Swin and MaxViT."""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

keras_builder = pytest.importorskip("converters.keras")  # first: loads triton before TensorFlow
torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
nn = torch.nn
F = nn.functional

from converters.keras import count_weights, feature_extractor, onnx_to_keras  # noqa: E402
from converters.onnx_export import export_onnx  # noqa: E402
from converters.runners.base import to_nhwc  # noqa: E402
from tests.support.keras_models import assert_fresh_process_outputs  # noqa: E402

ATOL = 1e-5


# -- timm-style ViT/DeiT --------------------------------------------------------
class TimmAttention(nn.Module):
    """timm's ``Attention``: qkv as (3, batch, heads, seq, dim), so the batch moves to axis 1."""

    def __init__(self, dim: int, heads: int, fused: bool) -> None:
        super().__init__()
        self.heads, self.scale, self.fused = heads, (dim // heads) ** -0.5, fused
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.fused:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            x = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class ManualNorm(nn.Module):
    """LayerNorm spelled out: ReduceMean, Pow, Sqrt and Div of two tensors."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.rand(dim) + 0.5), nn.Parameter(torch.rand(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(-1, keepdim=True)
        var = (x - mu).pow(2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * self.weight + self.bias


class Block(nn.Module):
    def __init__(self, dim: int, fused: bool, norm: type = nn.LayerNorm) -> None:
        super().__init__()
        self.norm1, self.attn = norm(dim), TimmAttention(dim, 2, fused)
        self.norm2 = norm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyDeiT(nn.Module):
    """Class and distillation tokens expanded to the batch, timm attention both ways, two heads."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, 8, stride=8)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.dist_token = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos_embed = nn.Parameter(torch.randn(1, 18, dim) * 0.1)
        self.blocks = nn.Sequential(Block(dim, fused=False), Block(dim, True, ManualNorm))
        self.norm = nn.LayerNorm(dim)
        self.head, self.head_dist = nn.Linear(dim, 10), nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        batch = x.shape[0]
        tokens = (self.cls_token.expand(batch, -1, -1), self.dist_token.expand(batch, -1, -1))
        x = self.norm(self.blocks(torch.cat((*tokens, x), dim=1) + self.pos_embed))
        return (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2


# -- Swin's pieces ----------------------------------------------------------------
def relative_index(w: int) -> torch.Tensor:
    grid = torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")
    coords = torch.flatten(torch.stack(grid), 1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (w - 1)
    return (rel[..., 0] * (2 * w - 1) + rel[..., 1]).flatten()


class WindowAttention(nn.Module):
    """Cyclic shift (roll), window partition into (batch * windows, w*w, C), relative position
    bias gathered from a table, the shifted-window mask built in forward (ScatterND, Equal,
    Where), window reverse."""

    def __init__(self, dim: int = 16, w: int = 4, heads: int = 2, shift: int = 2) -> None:
        super().__init__()
        self.w, self.heads, self.shift = w, heads, shift
        self.table = nn.Parameter(torch.randn((2 * w - 1) ** 2, heads))
        self.register_buffer("index", relative_index(w))
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        _, h, wd, _ = x.shape
        w, s = self.w, self.shift
        img = x.new_zeros((h, wd))
        cnt = 0
        for rows in (slice(0, -w), slice(-w, -s), slice(-s, None)):
            for cols in (slice(0, -w), slice(-w, -s), slice(-s, None)):
                img[rows, cols] = cnt
                cnt += 1
        win = img.view(h // w, w, wd // w, w).permute(0, 2, 1, 3).reshape(-1, w * w)
        mask = win.unsqueeze(1) - win.unsqueeze(2)
        return mask.masked_fill(mask != 0, -100.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, wd, c = x.shape
        w, n = self.w, self.w * self.w
        x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        win = x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, n, c)
        qkv = self.qkv(win).reshape(win.shape[0], n, 3, self.heads, c // self.heads)
        qkv = qkv.permute(2, 0, 3, 1, 4)
        attn = qkv[0] @ qkv[1].transpose(-2, -1) * (c // self.heads) ** -0.5
        bias = self.table[self.index].view(n, n, -1).permute(2, 0, 1)
        mask = self.mask(x)
        attn = attn.view(-1, mask.shape[0], self.heads, n, n) + bias.unsqueeze(0) + mask[:, None]
        attn = attn.view(-1, self.heads, n, n).softmax(-1)
        out = self.proj((attn @ qkv[2]).transpose(1, 2).reshape(-1, n, c))
        out = out.view(b, h // w, wd // w, w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, wd, c)
        return torch.roll(out, shifts=(self.shift, self.shift), dims=(1, 2))


class TinySwin(nn.Module):
    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.norm = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).permute(0, 2, 3, 1)
        x = x + self.attn(self.norm(x))
        return self.head(x.mean((1, 2)))


class MaskNet(nn.Module):
    """Where/Equal/Not/Greater on model tensors and on a mask buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.register_buffer("keep", (torch.arange(8) % 3 != 0).view(1, 8, 1, 1))
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        y = torch.where(y > 0, y, 0.1 * y)
        y = y.masked_fill(~(y < 1.5), 1.5).masked_fill(y == 0.0, -1.0)
        y = y.masked_fill(self.keep == 0, -2.0)
        return self.fc(y.mean((2, 3)))


class Reductions(nn.Module):
    """timm's EdgeNeXt, SwiftFormer and ConvNeXt-RMS pieces: a Fourier position encoding from
    the running sum of a batch-shaped mask (CumSum, Sin, Cos), ``F.normalize`` (ReduceL2, an
    Expand of a model tensor), an RMS scale over a size folded from the shape (ReduceProd at
    build time), and Sum/Max/Min/Prod over tensors."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, dim, 4, stride=4)
        self.fc = nn.Linear(4 * dim, 10)

    @staticmethod
    def fourier(b: int, h: int, w: int) -> torch.Tensor:
        not_mask = ~torch.zeros(b, h, w, dtype=torch.bool)
        dim_t = torch.arange(4, dtype=torch.float32)
        dim_t = 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / 4)
        pos = []
        for axis in (1, 2):
            e = not_mask.cumsum(axis, dtype=torch.float32)
            e = e / (e.narrow(axis, e.shape[axis] - 1, 1) + 1e-6) * 2 * math.pi
            p = e[:, :, :, None] / dim_t
            pos.append(torch.stack((p[..., 0::2].sin(), p[..., 1::2].cos()), dim=4).flatten(3))
        return torch.cat(pos, dim=3).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        b, _, h, w = y.shape
        y = F.normalize(y + self.fourier(b, h, w), dim=1)
        size = torch.tensor(y.shape[2:]).prod()
        y = y * torch.rsqrt(y.pow(2).sum((2, 3), keepdim=True) / size + 1e-6)
        y = y * (y.abs() * 0.1 + 0.9).prod(1, keepdim=True) + y.flip(1).cumsum(1, dtype=None)
        return self.fc(torch.cat([y.sum((2, 3)) / size, y.amax((2, 3)), y.amin((2, 3)),
                                  y.mean((2, 3))], 1))


class GlobalQuery(nn.Module):
    """GC ViT's global attention: one query per image, repeated for each of its windows by
    ``repeat_interleave(B // b)``, a division of two batch-dependent sizes (the batch
    cancels) and a Tile of a model tensor; a LayerNorm without bias (PoolFormerV2's)."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, dim, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(dim, bias=False)
        self.fc = nn.Linear(4 * dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)  # (b, C, 8, 8): four 4x4 windows per image
        b, c = y.shape[:2]
        win = y.reshape(b, c, 2, 4, 2, 4).permute(0, 2, 4, 3, 5, 1).reshape(-1, 16, c)
        q = y.mean((2, 3)).unsqueeze(1)
        q = q.repeat_interleave(win.shape[0] // q.shape[0], dim=0)  # (b * 4, 1, C)
        attn = (q @ win.transpose(1, 2) / math.sqrt(c)).softmax(-1)
        return self.fc(self.norm(attn @ win).reshape(b, 4 * c))


def _small_vit() -> nn.Module:
    return torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2,
                                                num_heads=2, hidden_dim=16, mlp_dim=32,
                                                num_classes=10)


def _small_swin() -> nn.Module:
    """40 px: 10x10 tokens padded to 12 in windows of 4, then 5x5 padded to 8."""
    return torchvision.models.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2],
                                              num_heads=[2, 4], window_size=[4, 4], num_classes=10)


def _small_maxvit() -> nn.Module:
    return torchvision.models.MaxVit(input_size=(64, 64), stem_channels=8, partition_size=4,
                                     block_channels=[16, 32], block_layers=[1, 1], head_dim=8,
                                     stochastic_depth_prob=0.0, num_classes=10)


# name -> (factory, image size, whether Keras holds exactly PyTorch's parameters)
TINY = {"deit": (TinyDeiT, 32, True), "swin_parts": (TinySwin, 32, False),
        "masks": (MaskNet, 16, True), "reductions": (Reductions, 32, True),
        "global_query": (GlobalQuery, 16, True),
        "vit": (_small_vit, 32, True),
        "swin": (_small_swin, 40, False), "maxvit": (_small_maxvit, 64, False)}


def randomized(model: nn.Module) -> nn.Module:
    """Zero-initialised weights (ViT's head) made random, so logits are not all zero."""
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2 and not p.any():
                p.normal_(0, 0.02)
    return model.eval()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = {}
    for i, (name, (factory, size, _)) in enumerate(TINY.items()):
        torch.manual_seed(i)
        model = randomized(factory())
        path = export_onnx(model, input_shape=(1, 3, size, size),
                           path=tmp_path_factory.mktemp("onnx") / f"{name}.onnx")
        out[name] = (model, path, size)
    return out


def _compare(model: nn.Module, keras_model, size: int, batch: int, seed: int = 0
             ) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32)
    got = np.asarray(keras_model(x.transpose(0, 2, 3, 1), training=False))
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    return got, want


@pytest.mark.parametrize("name", list(TINY))
def test_tiny_transformer_matches_torch(tiny: dict, name: str) -> None:
    model, path, size = tiny[name]
    keras_model = onnx_to_keras(path).model
    for batch in (1, 3):
        got, want = _compare(model, keras_model, size, batch)
        assert got.shape == want.shape == (batch, 10)
        assert np.abs(got - want).max() <= ATOL, (name, batch, np.abs(got - want).max())


@pytest.mark.parametrize("name", [n for n, (_, _, exact) in TINY.items() if exact])
def test_tiny_transformer_parameters(tiny: dict, name: str) -> None:
    """The class token stays one trainable variable: Keras holds exactly PyTorch's parameters."""
    model, path, _ = tiny[name]
    params = sum(p.numel() for p in model.parameters())
    assert count_weights(onnx_to_keras(path).model) == (params, 0)


def _kinds(conversion) -> set[str]:
    return {type(layer).__name__ for layer in conversion.model.layers}


def test_attention_layers_and_batch_layouts(tiny: dict) -> None:
    """Attention is Softmax plus MatMul layers; the batch moves (timm, ViT) and merges (Swin)."""
    deit = onnx_to_keras(tiny["deit"][1])
    assert {"Softmax", "MatMul", "BatchBroadcast", "Unary", "Binary"} <= _kinds(deit)
    assert {ref.perm[0] for ref in deit.tensors.values()} == {0, 1}  # timm's (3, batch, ...)
    swin = onnx_to_keras(tiny["swin"][1])
    assert {"BatchReshape", "PadAxes", "Concatenate", "Slice"} <= _kinds(swin)  # windows, roll
    assert "Einsum" in _kinds(onnx_to_keras(tiny["maxvit"][1]))
    assert "Where" in _kinds(onnx_to_keras(tiny["masks"][1]))
    assert {"CumSum", "Reduce", "BroadcastTo"} <= _kinds(onnx_to_keras(tiny["reductions"][1]))


@pytest.mark.parametrize("name, layer", [("deit", "norm"), ("vit", "encoder.ln")])
def test_token_features_flatten_like_torch(tiny: dict, name: str, layer: str) -> None:
    model, path, size = tiny[name]
    features = feature_extractor(onnx_to_keras(path), layer)
    x = np.random.default_rng(2).standard_normal((3, 3, size, size)).astype(np.float32)
    captured = []
    hook = model.get_submodule(layer).register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        model(torch.from_numpy(x))
    hook.remove()
    want = captured[0].flatten(1).numpy()
    got = np.asarray(features(x.transpose(0, 2, 3, 1)))
    assert got.shape == want.shape and np.abs(got - want).max() <= ATOL


def test_saved_transformers_load_in_fresh_process(tiny: dict, tmp_path: Path) -> None:
    cases = {}
    for name, (model, onnx_path, size) in tiny.items():
        keras_path = tmp_path / f"{name}.keras"
        keras_model = onnx_to_keras(onnx_path).model
        keras_model.save(keras_path)
        x = np.random.default_rng(5).standard_normal((2, 3, size, size)).astype(np.float32)
        cases[name] = (keras_path, to_nhwc(x), _compare(model, keras_model, size, 2, seed=5)[1])
    assert_fresh_process_outputs(cases, ATOL)


# -- full-size torchvision transformers, random weights ---------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit_b_16", "swin_t", "maxvit_t"])
def test_torchvision_transformer_converts(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = randomized(getattr(torchvision.models, name)(weights=None))
    path = export_onnx(model, input_shape=(1, 3, 224, 224), path=tmp_path / f"{name}.onnx")
    start = time.perf_counter()
    keras_model = onnx_to_keras(path).model
    build_s = time.perf_counter() - start
    for batch in (1, 3):
        got, want = _compare(model, keras_model, 224, batch, seed=batch)
        err, scale = float(np.abs(got - want).max()), float(np.abs(want).max())
        print(f"{name} batch {batch}: max abs error {err:.2e} (max |logit| {scale:.2f}), "
              f"build {build_s:.1f} s")
        assert err <= 1e-4 + 1e-5 * scale
        assert (got.argmax(1) == want.argmax(1)).all()
