"""PDAE, REB/LDKNN, GDE and ULSAD anomaly detection models for anomalib.

Importing this package is cheap: the models (and torch) load on first attribute access.

Example:
    >>> from anomalib_pdae import Ldknn
    >>> model = Ldknn(backbone="resnet18", pre_trained=False)
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_MODELS = {
    "Gde": "anomalib_pdae.models.gde",
    "Ldknn": "anomalib_pdae.models.ldknn",
    "Pdae": "anomalib_pdae.models.pdae",
    "Reb": "anomalib_pdae.models.reb",
    "Ulsad": "anomalib_pdae.models.ulsad",
}

__all__ = ["Gde", "Ldknn", "Pdae", "Reb", "Ulsad", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _MODELS:
        return getattr(import_module(_MODELS[name]), name)
    msg = f"module 'anomalib_pdae' has no attribute {name!r}"
    raise AttributeError(msg)
