"""The localisation run's data (resized as the models' pre-processors do), metrics and Patchcore baseline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.metrics import auroc
from benchmarks.timing import timed

IMAGE_SIZE = 256
CATEGORY = "kolektorsdd"


@dataclass
class Split:
    """Resized ``[0, 1]`` images, and for the test split labels and masks."""

    images: torch.Tensor
    labels: torch.Tensor | None = None
    masks: torch.Tensor | None = None


def load_splits(data_root: str | Path) -> tuple[Split, Split]:
    """KolektorSDD's training and test splits as anomalib's ``MVTecAD`` reads them, resized."""
    from anomalib.data import MVTecAD
    from torchvision.transforms.v2 import Resize

    datamodule = MVTecAD(
        root=data_root, category=CATEGORY, train_batch_size=32, eval_batch_size=32, num_workers=0
    )
    datamodule.setup()
    resize = Resize((IMAGE_SIZE, IMAGE_SIZE), antialias=True)
    train = torch.cat([resize(batch.image) for batch in datamodule.train_dataloader()])
    images, labels, masks = [], [], []
    for batch in datamodule.test_dataloader():
        image, mask = resize(batch.image, batch.gt_mask)
        images.append(image)
        labels.append(batch.gt_label)
        masks.append(mask)
    return Split(train), Split(torch.cat(images), torch.cat(labels).int(), torch.cat(masks).int())


class Metrics:
    """Image AUROC, pixel AUROC and anomalib's pixel ``AUPRO`` (FPR limit 0.3) of one test split.

    The masks' connected components are labelled once and reused by every ``AUPRO`` call.
    """

    def __init__(self, test: Split) -> None:
        self.test = test
        probe = _aupro()
        probe.update(torch.zeros(test.masks.shape), test.masks)
        self.components = probe.perform_cca()

    def __call__(self, image_scores: torch.Tensor, anomaly_maps: torch.Tensor) -> dict[str, float]:
        """Metrics of raw image scores ``(B,)`` and maps ``(B, 1, H, W)``."""
        maps = anomaly_maps.reshape(self.test.masks.shape).float()
        aupro = _aupro(self.components)
        aupro.update(maps, self.test.masks)
        return {
            "image_auroc": auroc(image_scores, self.test.labels) / 100,
            "pixel_auroc": auroc(maps, self.test.masks) / 100,
            "pixel_aupro": float(aupro.compute()),
        }


def _aupro(components: torch.Tensor | None = None):
    """Anomalib's ``_AUPRO`` (FPR limit 0.3), reusing the masks' labelled ``components`` when given."""
    from anomalib.metrics.aupro import _AUPRO

    class LabelledOnce(_AUPRO):
        def perform_cca(self) -> torch.Tensor:
            return super().perform_cca() if components is None else components

    return LabelledOnce()


def patchcore_baseline(
    backbone: str, weights: Path, layers: list[str], train: Split, test: Split, metrics: Metrics
) -> dict:
    """The row of anomalib's ``PatchcoreModel`` on a 1% bank of our greedy coreset (README.md).

    Everything but the coreset is anomalib's; its own coreset (same objective) takes hours here.
    """
    import timm
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel
    from torchvision.transforms.v2 import Normalize

    from anomalib_pdae.models.components import greedy_coreset
    from benchmarks.build import load_weights

    net = PatchcoreModel(layers=layers, backbone=backbone, pre_trained=False, num_neighbors=9)
    load_weights(net.feature_extractor.feature_extractor, weights)
    config = timm.create_model(backbone, pretrained=False).pretrained_cfg
    normalize = Normalize(mean=list(config["mean"]), std=list(config["std"]))
    net.train()
    with torch.no_grad():
        for images in train.images.split(8):
            net(normalize(images))  # in training mode the model stores its embeddings itself
        bank = torch.vstack(net.embedding_store)
        net.embedding_store.clear()
        net.memory_bank = bank[torch.from_numpy(greedy_coreset(bank, 0.01, progress=False))]
        net.eval()
        outputs, seconds = timed(lambda: [net(normalize(images)) for images in test.images.split(8)])
    scores = torch.cat([o.pred_score.flatten() for o in outputs])
    maps = torch.cat([o.anomaly_map for o in outputs])
    return {
        **{"backbone": backbone, "embedding_dim": "concat", "aggregation": "anomalib", "ratio": 0.01},
        "bank": len(net.memory_bank),
        "factor": "baseline",
        "row": "anomalib PatchcoreModel (9-NN reweighted image score, nearest + blur map)",
        **metrics(scores, maps),
        "ms_per_image": 1e3 * seconds / len(test.images),
    }
