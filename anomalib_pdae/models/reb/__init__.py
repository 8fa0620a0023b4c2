"""REB: DefectMaker self-supervised backbone fine-tuning followed by LDKNN."""

from .classifier import DefectClassifier
from .lightning_model import Reb
from .torch_model import RebModel

__all__ = ["DefectClassifier", "Reb", "RebModel"]
