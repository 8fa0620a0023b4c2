"""One picture per image a person can read: image | ground truth | heat map | predicted mask, with score.

Built from anomalib's own visualiser: :class:`PanelVisualizer` is its ``ImageVisualizer`` (same
fields, overlays and file names under ``<root>/images``) with one caption added, the image's
score against the threshold that decides its label. It is the default visualiser of this
package's models, so ``anomalib test`` and ``anomalib predict`` write these panels.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from anomalib.utils.path import generate_output_filename
from anomalib.visualization import ImageVisualizer
from anomalib.visualization.image.functional import add_text_to_image
from anomalib.visualization.image.item_visualizer import visualize_image_item
from PIL import Image

FIELDS = ["image", "gt_mask"]
OVERLAYS = [("image", ["anomaly_map"]), ("image", ["pred_mask"])]


def caption(score: float, threshold: float | None) -> str:
    """``"score 0.734 >= threshold 0.500: anomalous"``, or the score alone without a threshold.

    Example:
        >>> caption(0.2, 0.5)
        'score 0.200 < threshold 0.500: normal'
    """
    if threshold is None or math.isnan(threshold):
        return f"score {score:.3f}"
    anomalous = score >= threshold
    return f"score {score:.3f} {'>=' if anomalous else '<'} threshold {threshold:.3f}: " + (
        "anomalous" if anomalous else "normal"
    )


def score_threshold(pl_module: Any) -> float | None:
    """The image threshold on the scale of the scores the post-processor hands out, if known."""
    post = getattr(pl_module, "post_processor", None)
    if post is None or not hasattr(post, "image_threshold"):
        return None
    threshold = post.normalized_image_threshold if post.enable_normalization else post.image_threshold
    return float(torch.as_tensor(threshold))


class PanelVisualizer(ImageVisualizer):
    """anomalib's ``ImageVisualizer`` with the score and threshold written under the image.

    Example:
        >>> from anomalib.data import ImageItem
        >>> mask = torch.zeros(64, 64, dtype=torch.bool)
        >>> item = ImageItem(image=torch.rand(3, 64, 64), anomaly_map=torch.rand(64, 64),
        ...                  pred_mask=mask, gt_mask=mask, pred_score=torch.tensor(0.7))
        >>> PanelVisualizer().panel(item, threshold=0.5).size
        (1024, 256)
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("fields", FIELDS)
        kwargs.setdefault("overlay_fields", OVERLAYS)
        super().__init__(**kwargs)

    def panel(self, item: Any, threshold: float | None = None) -> Image.Image | None:
        """The panel of one ``ImageItem``; ``None`` when it has nothing to show."""
        image = visualize_image_item(
            item,
            fields=self.fields,
            overlay_fields=self.overlay_fields,
            field_size=self.field_size,
            fields_config=self.fields_config,
            overlay_fields_config=self.overlay_fields_config,
            text_config=self.text_config,
        )
        if image is None or item.pred_score is None:
            return image
        text = caption(float(torch.as_tensor(item.pred_score)), threshold)
        options = {k: v for k, v in self.text_config.items() if k != "enable"}
        return add_text_to_image(image, text, **options, position=(10, image.height - 30))

    def on_test_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Write one panel per image to ``<default_root_dir>/images`` (anomalib's file names)."""
        del outputs, batch_idx, dataloader_idx
        if self.output_dir is None:
            self.output_dir = Path(trainer.default_root_dir) / "images"
        threshold = score_threshold(pl_module)
        datamodule = getattr(trainer, "datamodule", None)
        for item in batch:
            image = self.panel(item, threshold)
            if image is not None:
                image.save(
                    generate_output_filename(
                        input_path=item.image_path or "",
                        output_path=self.output_dir,
                        dataset_name=getattr(datamodule, "name", None),
                        category=getattr(datamodule, "category", None),
                    )
                )
