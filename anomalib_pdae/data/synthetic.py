"""A small generated dataset in MVTec AD layout, for demos and tests that have no real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def make_synthetic_dataset(
    root: str | Path,
    category: str = "synthetic",
    n_train: int = 32,
    n_test_good: int = 8,
    n_test_defect: int = 8,
    image_size: int = 128,
    seed: int = 0,
) -> Path:
    """Write a textured-surface dataset with scratch-like defects; return the category folder.

    Normal images are smooth random textures; each defect image carries one bright or dark
    stroke, with its ground-truth mask in ``ground_truth/defect/<name>_mask.png`` as anomalib's
    ``MVTecAD`` datamodule expects (``MVTecAD(root=root, category=category)``).

    Example:
        >>> folder = make_synthetic_dataset("data", n_train=4, n_test_good=2, n_test_defect=2)
        >>> sorted(p.name for p in folder.iterdir())
        ['ground_truth', 'test', 'train']
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / category
    for sub in ("train/good", "test/good", "test/defect", "ground_truth/defect"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for split, count in (("train/good", n_train), ("test/good", n_test_good)):
        for i in range(count):
            Image.fromarray(_texture(rng, image_size)).save(folder / split / f"{i:03d}.png")
    for i in range(n_test_defect):
        image, mask = _with_defect(_texture(rng, image_size), rng)
        Image.fromarray(image).save(folder / "test/defect" / f"{i:03d}.png")
        Image.fromarray(mask).save(folder / "ground_truth/defect" / f"{i:03d}_mask.png")
    return folder


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth, slightly coloured noise texture (uint8, H×W×3)."""
    coarse = rng.normal(0.0, 1.0, (size // 8, size // 8, 3)).astype(np.float32)
    smooth = np.asarray(
        Image.fromarray(((coarse * 20) + 128).clip(0, 255).astype(np.uint8)).resize(
            (size, size), Image.BICUBIC
        ),
        dtype=np.float32,
    )
    grain = rng.normal(0.0, 6.0, (size, size, 1))
    return (smooth + grain).clip(0, 255).astype(np.uint8)


def _with_defect(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw one thick stroke; return the image and its binary mask (0/255)."""
    size = image.shape[0]
    mask_image = Image.new("L", (size, size), 0)
    start = rng.uniform(0.2, 0.8, 2) * size
    end = start + rng.uniform(-0.3, 0.3, 2) * size
    width = max(3, size // 20)
    ImageDraw.Draw(mask_image).line([tuple(start), tuple(end.clip(0, size - 1))], fill=255, width=width)
    mask = np.asarray(mask_image) > 0
    colour = 235 if rng.random() < 0.5 else 20
    out = image.copy()
    out[mask] = colour
    return out, (mask * 255).astype(np.uint8)
