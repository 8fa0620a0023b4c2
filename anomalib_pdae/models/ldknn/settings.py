"""LDKNN's configuration: one frozen record, validated once, shared by Ldknn, Reb and LdknnModel."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from anomalib_pdae.models.components.embedding import check_embedding, reb_embedding_dim
from anomalib_pdae.models.components.search import SEARCH_MODES, check_search

from .image_score import IMAGE_SCORES
from .scorers import DENSITY_MODES, DISTANCES, NEEDS_TWO_NEIGHBOURS, SCORERS

# What the pixel map is made of: the scorer's patch scores (REB), or the plain distance to the
# nearest memory point (PatchCore's map) while the image score keeps the scorer's correction.
MAP_SCORES = ("score", "distance")
# Settings that shape the memory bank itself: changing one means fitting again.
BANK_SETTINGS = ("backbone", "layers", "embedding_dim", "aggregation", "coreset_ratio")


@dataclass(frozen=True)
class LdknnSettings:
    """Everything that defines an LDKNN model but where its weights come from.

    The fields are the arguments of :class:`~anomalib_pdae.models.ldknn.Ldknn` (documented there)
    of the same name, with its defaults: REB's. ``Ldknn`` and ``Reb`` take them as flat keyword
    arguments (``--model.k 7`` on the CLI, flat hyper-parameters in checkpoints) and build one
    ``LdknnSettings`` from them; an invalid value is refused here with a message naming it.

    Example:
        >>> settings = LdknnSettings(backbone="resnet18", k=3)
        >>> settings.k, settings.embedding_width
        (3, 512)
        >>> LdknnSettings(k=0)
        Traceback (most recent call last):
        ...
        ValueError: k (neighbourhood size) must be an integer >= 1, got 0.
    """

    backbone: str = "resnet18.tv_in1k"
    layers: Sequence[str] = ("layer2", "layer3")
    k: int = 5
    ld_coefficient: float = 1.0
    density_mode: str = "subtract"
    image_score: str = "block_max"
    scorer: str = "ldknn"
    distance: str = "squared"
    coreset_ratio: float = 1.0
    embedding_dim: int | None = None
    aggregation: str = "reference"
    map_score: str = "score"
    search: str = "exact"
    candidates: int = 8
    projection_dim: int = 128
    density_search: str = "exact"

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        for name, allowed in (
            ("scorer", SCORERS),
            ("map_score", MAP_SCORES),
            ("density_mode", DENSITY_MODES),
            ("image_score", IMAGE_SCORES),
            ("distance", DISTANCES),
            ("density_search", SEARCH_MODES),
        ):
            _check_choice(name, getattr(self, name), allowed)
        if not isinstance(self.k, int) or self.k < 1:
            msg = f"k (neighbourhood size) must be an integer >= 1, got {self.k!r}."
            raise ValueError(msg)
        if self.scorer in NEEDS_TWO_NEIGHBOURS and self.k < 2:
            msg = f"k must be >= 2 for scorer={self.scorer!r} (it needs two neighbours per point)."
            raise ValueError(msg)
        if self.ld_coefficient < 0:
            msg = f"ld_coefficient (gamma) must be >= 0, got {self.ld_coefficient}."
            raise ValueError(msg)
        if not 0 < self.coreset_ratio <= 1:
            msg = f"coreset_ratio must be in (0, 1] (1 keeps the whole bank), got {self.coreset_ratio}."
            raise ValueError(msg)
        check_embedding(self.embedding_width, self.aggregation)
        check_search(self.search, self.candidates, self.projection_dim, self.search_features, self.search_k)

    @property
    def embedding_width(self) -> int:
        """D of the reference aggregation: ``embedding_dim``, or REB's for the backbone."""
        return reb_embedding_dim(self.backbone) if self.embedding_dim is None else self.embedding_dim

    @property
    def search_k(self) -> int:
        """Neighbours ``forward`` asks the search for: LDKNN's nearest memory point, or K."""
        return 1 if self.scorer == "ldknn" else self.k

    @property
    def search_features(self) -> int | None:
        """Width of the memory rows when known before fitting (anomalib's aggregation: not known)."""
        return self.embedding_width if self.aggregation == "reference" else None

    @classmethod
    def from_arguments(cls, arguments: dict[str, Any]) -> LdknnSettings:
        """The settings among a constructor's arguments (e.g. its ``locals()``); other keys are ignored."""
        return cls(**{field.name: arguments[field.name] for field in fields(cls) if field.name in arguments})


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        msg = f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}."
        raise ValueError(msg)


DEFAULTS = LdknnSettings()
