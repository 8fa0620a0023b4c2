"""Seeded feature banks and queries shared by the golden-parity tests (recipe in each golden file)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).parent / "golden"


def load_golden(name: str) -> dict:
    """One golden file of ``tests/golden``: the authors' outputs and how they were produced."""
    return json.loads((GOLDEN / name).read_text())


def clustered_bank_and_queries(
    seed: int, clusters: int, bank: int, queries: int, dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """Memory bank of clusters with unequal spreads; queries half near bank points, half far off."""
    rng = np.random.default_rng(seed)
    centres = np.abs(rng.standard_normal((clusters, dim), dtype=np.float32))
    spreads = rng.uniform(0.05, 0.5, clusters).astype(np.float32)
    members = rng.integers(0, clusters, bank)
    noise = rng.standard_normal((bank, dim), dtype=np.float32)
    points = (centres[members] + spreads[members, None] * noise).astype(np.float32)
    half = queries // 2
    near = points[rng.integers(0, bank, half)] + 0.1 * rng.standard_normal((half, dim), dtype=np.float32)
    far = np.abs(rng.standard_normal((queries - half, dim), dtype=np.float32))
    return points, np.concatenate([near, far]).astype(np.float32)


def pdae_features_and_reconstruction(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Post-ReLU-like features ``F`` (2, 960, 24, 24) and a reconstruction with a defect in image 1."""
    rng = np.random.default_rng(seed)
    shape = (2, 960, 24, 24)
    features = np.abs(rng.standard_normal(shape, dtype=np.float32))
    reconstruction = features + 0.1 * rng.standard_normal(shape, dtype=np.float32)
    reconstruction[1, :, 5:9, 14:18] += rng.standard_normal((960, 4, 4), dtype=np.float32)
    return features, reconstruction.astype(np.float32)


def ulsad_branches(seed: int) -> tuple[np.ndarray, ...]:
    """ULSAD's phi, G, L, L' (2, 384, 32, 32): L near phi, L' near G, one defect in image 1 for each."""
    rng = np.random.default_rng(seed)
    shape = (2, 384, 32, 32)
    phi = rng.standard_normal(shape, dtype=np.float32)
    local = phi + 0.3 * rng.standard_normal(shape, dtype=np.float32)
    glob = rng.standard_normal(shape, dtype=np.float32)
    local_global = glob + 0.5 * rng.standard_normal(shape, dtype=np.float32)
    local[1, :, 20:26, 6:12] += 1.5 * rng.standard_normal((384, 6, 6), dtype=np.float32)
    local_global[1, :, 4:10, 22:28] += 1.5 * rng.standard_normal((384, 6, 6), dtype=np.float32)
    return phi, glob, local.astype(np.float32), local_global.astype(np.float32)
