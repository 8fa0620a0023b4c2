"""PDAE: patch distance auto-encoder (Ma, Li, Wong, ESWA 2025)."""

from .lightning_model import Pdae
from .loss import PdaeLoss
from .torch_model import PdaeModel

__all__ = ["Pdae", "PdaeLoss", "PdaeModel"]
