"""DefectMaker (REB §3.1): synthetic defects as a shape fused with a fill, for self-supervision.

Example:
    >>> import numpy as np
    >>> from anomalib_pdae.data.defectmaker import DefectMaker, CLASS_NAMES
    >>> samples = DefectMaker().variants(
    ...     np.full((64, 64, 3), 128, np.uint8), np.ones((64, 64), bool), np.random.default_rng(0)
    ... )
    >>> [CLASS_NAMES[s.label] for s in samples][:2]
    ['normal', 'bezier+cutpaste']
"""

from anomalib_pdae.data.defectmaker.maker import (
    CLASS_NAMES,
    DEFECT_TYPES,
    NUM_CLASSES,
    Defect,
    DefectMaker,
    defect_batch,
    defect_label,
)
from anomalib_pdae.data.defectmaker.saliency import SALIENCY_MODES, Saliency, estimate_foreground

__all__ = [
    "CLASS_NAMES",
    "DEFECT_TYPES",
    "NUM_CLASSES",
    "SALIENCY_MODES",
    "Defect",
    "DefectMaker",
    "Saliency",
    "defect_batch",
    "defect_label",
    "estimate_foreground",
]
