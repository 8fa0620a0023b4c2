"""OpenVINO compression for this package's models: FP16 and INT8 weights; 8-bit activations refused.

anomalib's ``to_openvino`` creates the export folder before it compresses, so a refused type is
refused here, before anything is written. Measured on KolektorSDD:
``benchmarks/results/compression.md`` and ``deployment.md`` (``python benchmarks/deployment.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anomalib.deploy import CompressionType

if TYPE_CHECKING:
    import openvino as ov

REFUSED = {
    CompressionType.INT8_PTQ: (
        "8-bit activations move the features these models compare by distances (to a memory bank, "
        "or to their reconstruction): on KolektorSDD image AUROC fell by 8 points for Ldknn and "
        "Pdae and to chance for Ulsad (benchmarks/results/compression.md); int8 (8-bit weights "
        "only) stayed within about a point"
    ),
    CompressionType.INT8_ACQ: (
        "accuracy-controlled quantisation starts from the same 8-bit activations as int8_ptq and "
        "measures its accuracy drop on the datamodule's test split, which would tune the exported "
        "model on test images"
    ),
}


def check_compression(model_name: str, compression_type: CompressionType | str | None) -> None:
    """Raise a ``ValueError`` saying why when ``compression_type`` is refused.

    Example:
        >>> check_compression("Ldknn", CompressionType.FP16)
        >>> check_compression("Pdae", "int8_acq")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ValueError: Pdae cannot be exported with compression_type=int8_acq: ...
    """
    if compression_type is None:
        return
    compression_type = CompressionType(compression_type)
    if compression_type in REFUSED:
        supported = ", ".join(t.value for t in CompressionType if t not in REFUSED)
        msg = (
            f"{model_name} cannot be exported with compression_type={compression_type.value}: "
            f"{REFUSED[compression_type]}. Export without compression (FP32) or with {supported}."
        )
        raise ValueError(msg)


def compress(model: ov.Model, compression_type: CompressionType) -> ov.Model:
    """``model`` with 8-bit weights (NNCF's weight compression); other types are refused."""
    import nncf

    check_compression("model", compression_type)
    if compression_type != CompressionType.INT8:
        msg = f"Unrecognised compression type: {compression_type}"
        raise ValueError(msg)
    return nncf.compress_weights(model)
