"""What every model of this package does the same way: quiet runs, clean export, readable pictures."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from anomalib.deploy import CompressionType
from torch import nn

from anomalib_pdae import quiet
from anomalib_pdae.models.components.compression import check_compression, compress
from anomalib_pdae.panels import PanelVisualizer

# The ONNX exporter's own opset. anomalib asks for 14, which makes torch down-convert the graph
# (a fallback traceback for Pad, then success); OpenVINO reads opset 18 directly.
ONNX_OPSET = 18


class PluginDefaultsMixin:
    """Narrow message filters from construction on, ONNX at opset 18, panels as pictures.

    Every export (torch, ONNX, OpenVINO) first calls the torch model's ``check_fitted()`` when it
    has one, so an unfitted memory-bank model is refused before anything is written.

    Put it first among the bases: ``class Ldknn(PluginDefaultsMixin, AnomalibModule)``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        quiet.install()
        super().__init__(*args, **kwargs)

    @classmethod
    def configure_visualizer(cls) -> PanelVisualizer:
        """Image | ground truth | heat map | predicted mask, captioned with score and threshold."""
        return PanelVisualizer()

    def to_torch(self, export_root: Path | str, model_file_name: str = "model") -> Path:
        """Anomalib's torch export (a pickled model)."""
        _refuse_unfitted(self)
        return super().to_torch(export_root, model_file_name)  # type: ignore[misc]

    def to_onnx(
        self,
        export_root: Path | str,
        model_file_name: str = "model",
        input_size: tuple[int, int] | None = None,
        **kwargs: Any,
    ) -> Path:
        """Anomalib's ONNX export at opset 18 (no down-conversion), without the exporter's progress."""
        _refuse_unfitted(self)
        kwargs.setdefault("opset_version", ONNX_OPSET)
        kwargs.setdefault("verbose", quiet.verbose() or False)
        with _out_of_place(self):  # type: ignore[arg-type]
            return super().to_onnx(export_root, model_file_name, input_size, **kwargs)  # type: ignore[misc]

    def to_openvino(
        self,
        export_root: Path | str,
        model_file_name: str = "model",
        input_size: tuple[int, int] | None = None,
        compression_type: CompressionType | None = None,
        **kwargs: Any,
    ) -> Path:
        """Anomalib's OpenVINO export; a refused compression type is refused before any write."""
        _refuse_unfitted(self)
        check_compression(type(self).__name__, compression_type)
        return super().to_openvino(export_root, model_file_name, input_size, compression_type, **kwargs)  # type: ignore[misc]

    def _compress_ov_model(
        self,
        model: Any,
        compression_type: CompressionType | None = None,
        datamodule: Any = None,
        metric: Any = None,
        task: Any = None,
        max_drop: float = 0.01,
    ) -> Any:
        """8-bit weights by :func:`compress` (the other INT8 types are refused)."""
        del datamodule, metric, task, max_drop
        return compress(model, CompressionType(compression_type))


def _refuse_unfitted(module: Any) -> None:
    check = getattr(getattr(module, "model", None), "check_fitted", None)
    if check is not None:
        check()


@contextmanager
def _out_of_place(model: nn.Module) -> Iterator[None]:
    """Run ``model``'s in-place activations out of place for the duration of the block.

    The dynamo exporter decomposes in-place ops (timm's ``ReLU6(inplace=True)`` in MobileNetV2)
    through symbolic-shape reference implementations, which makes half of the export time; the
    out-of-place graph is the same once converted, and the flags are restored afterwards.
    """
    switched = [m for m in model.modules() if getattr(m, "inplace", False) is True]
    for module in switched:
        module.inplace = False
    try:
        yield
    finally:
        for module in switched:
            module.inplace = True
