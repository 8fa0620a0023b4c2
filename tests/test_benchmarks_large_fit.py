"""benchmarks/large_fit.py: the stand-in training set and one measured row, on generated data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks import large_fit


def test_copies_are_seeded_variants_with_the_test_split_copied(synthetic_root: Path, tmp_path: Path) -> None:
    written = large_fit.write_copies(synthetic_root, tmp_path / "a", copies=3, category="synthetic")
    large_fit.write_copies(synthetic_root, tmp_path / "b", copies=3, category="synthetic")
    train = tmp_path / "a" / "synthetic" / "train" / "good"
    assert written == 24 * 3 == len(list(train.iterdir()))
    original = np.asarray(Image.open(synthetic_root / "synthetic" / "train" / "good" / "000.png"))
    assert np.array_equal(np.asarray(Image.open(train / "000_0.png")), original)
    variants = [np.asarray(Image.open(train / f"000_{copy}.png")) for copy in (1, 2)]
    assert all(v.shape[0] >= 0.85 * original.shape[0] - 1 for v in variants)
    assert not all(np.array_equal(v, original[: v.shape[0], : v.shape[1]]) for v in variants)
    for name in ("000_1.png", "013_2.png"):  # same seed, same variant
        again = tmp_path / "b" / "synthetic" / "train" / "good" / name
        assert np.array_equal(np.asarray(Image.open(train / name)), np.asarray(Image.open(again)))
    for split in ("test", "ground_truth"):
        copied = (tmp_path / "a" / "synthetic" / split).rglob("*")
        original = (synthetic_root / "synthetic" / split).rglob("*")
        assert sorted(p.relative_to(tmp_path / "a") for p in copied) == sorted(
            p.relative_to(synthetic_root) for p in original
        )


def test_a_row_on_disk_is_measured(synthetic_root: Path, tmp_path: Path) -> None:
    large_fit.write_copies(synthetic_root, tmp_path, copies=2, category="synthetic")
    row = large_fit.measure(str(tmp_path), "approximate", rows="disk", category="synthetic")
    assert row["training images"] == 48
    assert row["defective test images"] > 0  # the copied test split was found
    assert 0 < row["peak RSS MiB (fit)"] <= row["peak RSS MiB"]
    assert 0 <= row["image AUROC"] <= 100 and 0 <= row["pixel AUROC"] <= 100
    assert row["coreset s"] > 0 and row["densities s"] > 0
