"""LDKNN's "variable K", chosen per category on training images only (README.md, "REB rows")."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from anomalib_pdae.data.defectmaker import DEFECT_TYPES, DefectMaker, Saliency
from anomalib_pdae.models.components import greedy_coreset
from anomalib_pdae.models.components.search import faiss_knn
from anomalib_pdae.models.ldknn import LdknnModel, LdknnSettings, scorers
from anomalib_pdae.models.ldknn.image_score import image_scores
from anomalib_pdae.models.ldknn.settings import DEFAULTS

from .metrics import auroc
from .settings import K_CANDIDATES  # noqa: F401 (re-exported: REB's K candidates)

HOLDOUT = 0.2


def pick_k(aurocs: dict[int, float], default: int) -> int:
    """The K of the highest AUROC; ties go to ``default`` if it is among them, else the smallest.

    Example:
        >>> pick_k({3: 90.0, 5: 95.0, 7: 95.0}, default=7)
        7
        >>> pick_k({3: 90.0, 5: 95.0, 7: 95.0}, default=3)
        5
    """
    best = max(aurocs.values())
    tied = sorted(k for k, value in aurocs.items() if value == best)
    return default if default in tied else tied[0]


def split_holdout(n_images: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of ``n_images`` training images into (bank, held-out) index lists."""
    count = max(2, round(fraction * n_images))
    if n_images - count < 1:
        msg = f"variable K needs at least {count + 1} training images to hold {count} out, got {n_images}"
        raise ValueError(msg)
    holdout = sorted(random.Random(seed).sample(range(n_images), count))
    chosen = set(holdout)
    return [i for i in range(n_images) if i not in chosen], holdout


def pseudo_anomalies(
    images: torch.Tensor,
    rng: np.random.Generator,
    maker: DefectMaker | None = None,
    saliency: Saliency | None = None,
) -> torch.Tensor:
    """Six DefectMaker defects (one per type) fused into each ``[0, 1]`` image: ``(6·B, C, H, W)``."""
    maker = maker or DefectMaker()
    saliency = saliency or Saliency("foreground")
    arrays = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    masks = [saliency(array) for array in arrays]
    out = []
    for index, (array, mask) in enumerate(zip(arrays, masks, strict=True)):
        source = int(rng.choice([j for j in range(len(arrays)) if j != index] or [index]))
        for shape, fill in DEFECT_TYPES:
            out.append(maker.make(array, mask, shape, fill, rng, arrays[source], masks[source]).image)
    stacked = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)
    return stacked.to(images.dtype) / 255.0


def local_densities(
    memory: torch.Tensor, full_bank: torch.Tensor, ks: Sequence[int], distance: str = "squared"
) -> dict[int, torch.Tensor]:
    """LDKNN's local density of every memory point for each K, from one search with the largest K."""
    distances = faiss_knn(memory, full_bank, max(ks), exclude_self=True)[0]
    if distance == "euclidean":
        distances = np.sqrt(distances)
    return {k: torch.from_numpy(distances[:, :k].mean(1)) for k in ks}


def validation_scores(
    memory: torch.Tensor,
    full_bank: torch.Tensor,
    embeddings: torch.Tensor,
    ks: Sequence[int],
    settings: LdknnSettings = DEFAULTS,
) -> dict[int, torch.Tensor]:
    """LDKNN image scores, as :class:`LdknnModel` scores, of embeddings ``(B, D, H, W)`` for every K."""
    batch, dim, height, width = embeddings.shape
    queries = embeddings.permute(0, 2, 3, 1).reshape(-1, dim)
    nearest, index = scorers.nearest_memory(queries, memory, settings.distance)
    scores = {}
    for k, table in local_densities(memory, full_bank, ks, settings.distance).items():
        density = table.to(nearest.device)[index]
        patches = scorers.density_corrected(nearest, density, settings.ld_coefficient, settings.density_mode)
        scores[k] = image_scores(patches.reshape(batch, 1, height, width), settings.image_score)
    return scores


def validation_aurocs(
    memory: torch.Tensor,
    full_bank: torch.Tensor,
    normal: torch.Tensor,
    anomalous: torch.Tensor,
    ks: Sequence[int],
    settings: LdknnSettings = DEFAULTS,
) -> dict[int, float]:
    """Image AUROC (percent) of each K: ``normal`` / ``anomalous`` are embeddings ``(B, D, H, W)``."""
    scores = validation_scores(memory, full_bank, torch.cat([normal, anomalous]), ks, settings)
    labels = torch.cat([torch.zeros(len(normal)), torch.ones(len(anomalous))])
    return {k: auroc(value.cpu(), labels) for k, value in scores.items()}


def _images(
    train_data: Sequence, indices: Sequence[int], transform: Callable[[torch.Tensor], torch.Tensor]
) -> list[torch.Tensor]:
    """The dataset's images at ``indices`` through ``transform`` only (its augmentations off)."""
    augmentations = getattr(train_data, "augmentations", None)
    if augmentations is not None:
        train_data.augmentations = None
    try:
        return [transform(train_data[i].image) for i in indices]
    finally:
        if augmentations is not None:
            train_data.augmentations = augmentations


def _embed(model: LdknnModel, images: list[torch.Tensor] | torch.Tensor, batch_size: int) -> torch.Tensor:
    device = next(model.parameters()).device
    parts = [
        model.embed(torch.stack(list(images[start : start + batch_size])).to(device))
        for start in range(0, len(images), batch_size)
    ]
    return torch.cat(parts)


def choose_k(
    model: LdknnModel,
    train_data: Sequence,
    transform: Callable[[torch.Tensor], torch.Tensor],
    candidates: Sequence[int],
    default: int,
    holdout: float = HOLDOUT,
    seed: int = 0,
    batch_size: int = 16,
) -> dict:
    """Choose K from training images only; return the selection's record.

    ``model``: configured like the final one (its K unused), on the device to embed with;
    ``default``: the table's fixed K, preferred on ties; ``holdout``: the fraction held out.
    """
    started = time.perf_counter()
    model.eval()
    bank_indices, holdout_indices = split_holdout(len(train_data), holdout, seed)
    normals = torch.stack(_images(train_data, holdout_indices, transform))
    anomalies = pseudo_anomalies(normals, np.random.default_rng(seed))
    with torch.no_grad():
        full_bank = _embed(model, _images(train_data, bank_indices, transform), batch_size)
        full_bank = full_bank.permute(0, 2, 3, 1).reshape(-1, full_bank.shape[1])
        if max(candidates) >= len(full_bank):
            msg = f"K up to {max(candidates)} needs more than {len(full_bank)} bank patches"
            raise ValueError(msg)
        ratio, memory = model.settings.coreset_ratio, full_bank
        if ratio < 1:
            memory = full_bank[torch.from_numpy(greedy_coreset(full_bank, ratio, progress=False))]
        normal, anomalous = _embed(model, normals, batch_size), _embed(model, anomalies, batch_size)
        aurocs = validation_aurocs(memory, full_bank, normal, anomalous, candidates, model.settings)
    return {
        "k": pick_k(aurocs, default),
        "aurocs": {str(k): value for k, value in aurocs.items()},
        "default": default,
        "bank_indices": bank_indices,
        "holdout_indices": holdout_indices,
        "bank_patches": len(full_bank),
        "n_normal": len(normals),
        "n_anomalous": len(anomalies),
        "seconds": time.perf_counter() - started,
    }
