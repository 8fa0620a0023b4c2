"""DefectMaker (REB §3.1): synthetic defects as a shape fused with a fill, for self-supervision.

Also the CutPaste and DRAEM defects REB compares it with (Table 5), behind the same interface.

Example:
    >>> import numpy as np
    >>> from anomalib_pdae.data.defectmaker import DefectMaker, CLASS_NAMES
    >>> samples = DefectMaker().variants(
    ...     np.full((64, 64, 3), 128, np.uint8), np.ones((64, 64), bool), np.random.default_rng(0)
    ... )
    >>> [CLASS_NAMES[s.label] for s in samples][:2]
    ['normal', 'bezier+cutpaste']
"""

from anomalib_pdae.data.defectmaker.baselines import (
    DEFECT_TASKS,
    CutPasteDefects,
    DraemDefects,
    defect_task,
)
from anomalib_pdae.data.defectmaker.maker import (
    CLASS_NAMES,
    DEFECT_TYPES,
    NUM_CLASSES,
    Defect,
    DefectMaker,
    SyntheticDefects,
    defect_batch,
)
from anomalib_pdae.data.defectmaker.saliency import SALIENCY_MODES, Saliency, estimate_foreground

__all__ = [
    "CLASS_NAMES",
    "DEFECT_TASKS",
    "DEFECT_TYPES",
    "NUM_CLASSES",
    "SALIENCY_MODES",
    "CutPasteDefects",
    "Defect",
    "DefectMaker",
    "DraemDefects",
    "Saliency",
    "SyntheticDefects",
    "defect_batch",
    "defect_task",
    "estimate_foreground",
]
