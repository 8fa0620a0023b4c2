"""Draw every DefectMaker defect type on real images, for a person to judge their realism (README.md).

python benchmarks/defectmaker_grid.py [--data ../shared/data/kolektorsdd] [--images 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from anomalib_pdae.data.defectmaker import CLASS_NAMES, DefectMaker, Saliency
from benchmarks.settings import SHARED

TILE = 256
HEADER = 18


def load(path: Path, size: int) -> np.ndarray:
    image = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
    return np.asarray(image)


def outlined(image: np.ndarray, weight: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours((weight > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return cv2.drawContours(image.copy(), contours, -1, (255, 0, 0), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add = parser.add_argument
    add("--data", type=Path, default=SHARED / "data" / "kolektorsdd")
    add("--images", type=int, default=3)
    add("--seed", type=int, default=0)
    add("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "defectmaker_grid.png")
    args = parser.parse_args()

    paths = sorted((args.data / "train" / "good").glob("*.png"))
    rng = np.random.default_rng(args.seed)
    chosen = [paths[i] for i in rng.choice(len(paths), size=args.images + 1, replace=False)]
    saliency = Saliency("foreground")
    maker = DefectMaker()
    source = load(chosen[-1], TILE)
    source_saliency = saliency(source, chosen[-1])
    rows = []
    for path in chosen[:-1]:
        image = load(path, TILE)
        mask = saliency(image, path)
        print(f"{path.name}: salient fraction {mask.mean():.2f}")
        base, base_mask = maker.prepare(image, mask, rng)
        samples = maker.variants(base, base_mask, rng, source, source_saliency)
        rows.append(np.concatenate([s.image for s in samples], axis=1))
        rows.append(np.concatenate([outlined(s.image, s.weight) for s in samples], axis=1))
    grid = Image.fromarray(np.concatenate(rows, axis=0))
    canvas = Image.new("RGB", (grid.width, grid.height + HEADER), "white")
    canvas.paste(grid, (0, HEADER))
    draw = ImageDraw.Draw(canvas)
    for column, name in enumerate(CLASS_NAMES):
        draw.text((column * TILE + 4, 3), f"{column}: {name}", fill="black")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
