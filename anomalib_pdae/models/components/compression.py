"""Which of anomalib's OpenVINO compression types a memory-bank model accepts.

anomalib's ``to_openvino`` creates the export folder before it compresses, so a type that must
be refused is refused here, before anything is written.
"""

from __future__ import annotations

from anomalib.deploy import CompressionType

# Why each refused type is refused for a nearest-neighbour model (LDKNN, REB). FP16 is measured
# (tests/test_compression.py); the INT8 types need NNCF, which is not a dependency, and each
# would quantise part of the search. Until their effect on the neighbour ranking is measured,
# they are refused rather than exported unchecked.
REFUSED_FOR_MEMORY_BANK = {
    CompressionType.INT8: (
        "NNCF weight compression would quantise the memory bank itself (a MatMul constant of "
        "the exported graph) to 8 bits, and its effect on the neighbour ranking is not validated"
    ),
    CompressionType.INT8_PTQ: (
        "post-training quantisation would also run the distance matmul on 8-bit queries and "
        "bank rows, and its effect on the neighbour ranking is not validated"
    ),
    CompressionType.INT8_ACQ: (
        "accuracy-controlled quantisation starts from the same 8-bit distance matmul as "
        "INT8_PTQ, and its effect on the neighbour ranking is not validated"
    ),
}


def check_compression(model_name: str, compression_type: CompressionType | str | None) -> None:
    """Raise a ``ValueError`` saying why when ``compression_type`` is refused for ``model_name``.

    Example:
        >>> check_compression("Ldknn", CompressionType.FP16)
        >>> check_compression("Ldknn", "int8_ptq")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ValueError: Ldknn cannot be exported with compression_type=int8_ptq: ...
    """
    if compression_type is None:
        return
    compression_type = CompressionType(compression_type)
    if compression_type in REFUSED_FOR_MEMORY_BANK:
        supported = ", ".join(t.value for t in CompressionType if t not in REFUSED_FOR_MEMORY_BANK)
        msg = (
            f"{model_name} cannot be exported with compression_type={compression_type.value}: "
            f"{REFUSED_FOR_MEMORY_BANK[compression_type]}. Export without compression (FP32) or "
            f"with {supported}."
        )
        raise ValueError(msg)
