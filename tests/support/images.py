"""Tiny synthetic image folders and IDX files for the transfer tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def make_image_folder(root: Path, *, per_class: int = 6, size: int = 24) -> Path:
    """``root/{train,test}/{dark,light}/*.png``, separable by brightness; every third is gray."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c, (name, level) in enumerate((("dark", 40), ("light", 210))):
            folder = Path(root) / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                noise = rng.integers(-20, 20, size=(size, size, 3))
                img = Image.fromarray(np.clip(level + noise, 0, 255).astype(np.uint8))
                if i % 3 == 0:
                    img = img.convert("L")
                img.save(folder / f"{split}_{c}_{i}.png")
    return Path(root)


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 array as a gzipped IDX file (the MNIST format)."""
    import gzip

    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    return path


def add_unreadable_files(folder: Path) -> tuple[Path, ...]:
    """A truncated JPEG, a zero-byte ``.jpg`` and a text file named ``.png`` in ``folder``."""
    import io

    from PIL import Image

    folder = Path(folder)
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 3), np.uint8)).save(
        buf, "JPEG", quality=90)
    truncated, empty, text = folder / "truncated.jpg", folder / "empty.jpg", folder / "x.png"
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    empty.write_bytes(b"")
    text.write_text("not an image, whatever the name says\n")
    return truncated, empty, text
