"""LDKNN (REB's local-density nearest neighbours) as an anomalib model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.visualization import Visualizer
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torch import nn

from anomalib_pdae.models.components.defaults import PluginDefaultsMixin
from anomalib_pdae.models.components.guards import CheckpointGuard
from anomalib_pdae.models.components.memory_bank import EmbeddingBankMixin

from .settings import DEFAULTS, LdknnSettings
from .torch_model import EMBEDDING_MEMORY_BYTES, LdknnModel


class Ldknn(PluginDefaultsMixin, CheckpointGuard, EmbeddingBankMixin, AnomalibModule):
    """Local-density KNN (REB, Lyu et al.): 1-NN patch distance minus gamma × the local density.

    Training collects patch embeddings of normal images; when the epoch ends the memory bank
    (optionally a greedy coreset) and each memory point's local density are computed. Defaults are
    REB's: ResNet-18 with torchvision's ImageNet weights (``resnet18.tv_in1k``, as REB and PatchCore
    loaded them) ``layer2`` + ``layer3``, K = 5, gamma = 1, subtract form, block-max image score,
    whole bank, D = REB's for the backbone (512 for ResNet-18), 256×256 input. The backbone
    normalises its own input, so the pre-processor only resizes. Grey and RGBA images work as they
    are; anomalib's reader clips 16-bit images, so convert such a dataset first with
    :func:`anomalib_pdae.data.images.convert_to_8bit`.

    ``backbone``, ``layers`` and ``k`` … ``density_search`` form the model's
    :class:`~anomalib_pdae.models.ldknn.LdknnSettings` (``model.model.settings``), whose fields
    give their defaults; ``model.model.rescore(scorer=..., k=...)`` re-scores a fitted bank.

    Args:
        backbone: timm architecture, optionally with its weights tag (``name.tag``).
        layers: two (or more) feature layers, shallow first.
        pre_trained: load timm's pretrained weights (needs the model hub).
        weights: local weights file for air-gapped machines (overrides ``pre_trained``).
        k: neighbourhood size K of the local density (and of the KNN variants).
        ld_coefficient: gamma, the weight of the local density.
        density_mode: ``"subtract"`` (the code: d − gamma·ld) or ``"ratio"`` (d / ld^gamma).
        image_score: ``"block_max"`` (max of 3×3 block means, the code) or ``"max"`` (the paper).
        scorer: ``"ldknn"`` or a Table 6 variant: ``"knn"``, ``"kth_nn"``, ``"lof"``, ``"ldof"``
            (textbook forms) or ``"lof_reb"``, ``"ldof_reb"`` (as REB's code computes them).
        distance: ``"squared"`` L2 (REB code) or ``"euclidean"`` (PatchCore).
        coreset_ratio: fraction of patches kept by the greedy coreset (1 keeps all).
        embedding_dim: D of the reference aggregation; ``None`` = REB's for the backbone (512
            for ResNet-18, 1024 for the wide ResNets and ResNet-101, else 512).
        aggregation: ``"reference"`` (PatchCore reference code) or ``"anomalib"`` (anomalib's).
        map_score: what the pixel map shows: ``"score"`` (the scorer's patch scores, REB) or
            ``"distance"`` (the plain nearest-memory distance, PatchCore's map; the image score
            keeps the density correction). See ``benchmarks/results/localisation.md``.
        search: nearest-neighbour search inside ``forward`` (and exported models): ``"exact"``
            or ``"approximate"`` (candidates in a PCA space of the bank, exact re-rank; see
            ``anomalib_pdae/models/ldknn/README.md`` and ``benchmarks/results/approximate_search.md``).
        candidates: bank rows re-ranked per patch by the approximate search (>= 1 for LDKNN,
            which searches the nearest memory point; >= k for the KNN variants).
        projection_dim: width of the approximate search's PCA space (<= embedding_dim).
        density_search: how the local densities find their K neighbours in the full bank at fit
            time: ``"exact"`` (faiss brute force) or ``"approximate"`` (16 candidates ranked in
            bfloat16, exact re-rank; 1.5× faster densities on AVX-512 BF16 CPUs, see
            ``models/ldknn/README.md``).

    Example:
        >>> from anomalib.data import MVTecAD
        >>> from anomalib.engine import Engine
        >>> model = Ldknn(backbone="resnet18", layers=["layer2", "layer3"], k=5)  # doctest: +SKIP
        >>> engine = Engine()
        >>> engine.fit(model, datamodule=MVTecAD(category="bottle"))  # doctest: +SKIP
        >>> engine.test(model, datamodule=MVTecAD(category="bottle"))  # doctest: +SKIP
    """

    embedding_memory_bytes = EMBEDDING_MEMORY_BYTES

    def __init__(
        self,
        backbone: str = DEFAULTS.backbone,
        layers: Sequence[str] = DEFAULTS.layers,
        pre_trained: bool = True,
        weights: str | Path | None = None,
        k: int = DEFAULTS.k,
        ld_coefficient: float = DEFAULTS.ld_coefficient,
        density_mode: str = DEFAULTS.density_mode,
        image_score: str = DEFAULTS.image_score,
        scorer: str = DEFAULTS.scorer,
        distance: str = DEFAULTS.distance,
        coreset_ratio: float = DEFAULTS.coreset_ratio,
        embedding_dim: int | None = DEFAULTS.embedding_dim,
        aggregation: str = DEFAULTS.aggregation,
        map_score: str = DEFAULTS.map_score,
        search: str = DEFAULTS.search,
        candidates: int = DEFAULTS.candidates,
        projection_dim: int = DEFAULTS.projection_dim,
        density_search: str = DEFAULTS.density_search,
        pre_processor: nn.Module | bool = True,
        post_processor: nn.Module | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        # the LDKNN arguments, flat for the CLI and the checkpoints, become one validated record
        settings = LdknnSettings.from_arguments(locals())
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        self.model = LdknnModel(settings, pre_trained=pre_trained, weights=weights)

    def validation_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Score a batch, a few images at a time: image scores and anomaly maps."""
        del args, kwargs
        return batch.update(**self.model.score(batch.image)._asdict())

    def test_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """As :meth:`validation_step` (anomalib's ``test_step`` scores the whole batch at once)."""
        return self.validation_step(batch, *args, **kwargs)
