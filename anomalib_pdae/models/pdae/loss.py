"""PDAE training loss: feature reconstruction error plus patch-embedding cosine distance."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from anomalib_pdae.models.components.embedding import neighbourhood_pool


class PdaeLoss(nn.Module):
    """``MSE(F, R) + beta · mean_over_batch[1 − cos(vec P_k(F), vec P_k(R))]``.

    ``P_k`` is every location's k×k neighbourhood average-pooled to ``embedding_dim`` values
    (:func:`~anomalib_pdae.models.components.embedding.neighbourhood_pool`); the cosine is taken
    over each image's whole flattened embedding, one value per image.

    Args:
        beta: weight of the cosine term.
        patch_size: neighbourhood size k.
        embedding_dim: length of each location's pooled vector.

    Example:
        >>> loss = PdaeLoss(beta=10.0)
        >>> features = torch.rand(2, 64, 16, 16)
        >>> bool(loss(features, features) < 1e-4)  # zero, up to float32 rounding
        True
    """

    def __init__(self, beta: float = 100.0, patch_size: int = 3, embedding_dim: int = 512) -> None:
        super().__init__()
        self.beta = beta
        self.patch_size = patch_size
        self.embedding_dim = embedding_dim

    def terms(
        self, features: torch.Tensor, reconstruction: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The reconstruction term and the (unweighted) cosine term."""
        mse = F.mse_loss(reconstruction, features)
        target = neighbourhood_pool(features, self.patch_size, self.embedding_dim).flatten(1)
        output = neighbourhood_pool(reconstruction, self.patch_size, self.embedding_dim).flatten(1)
        cosine = (1 - F.cosine_similarity(target, output, dim=1)).mean()
        return mse, cosine

    def forward(self, features: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
        """Scalar loss for features ``F`` and their reconstruction ``R``, both ``(B, C, H, W)``."""
        mse, cosine = self.terms(features, reconstruction)
        return mse + self.beta * cosine
