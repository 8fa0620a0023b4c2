"""ULSAD: deep feature reconstruction for logical and structural anomalies."""

from .lightning_model import Ulsad
from .torch_model import UlsadLoss, UlsadModel

__all__ = ["Ulsad", "UlsadLoss", "UlsadModel"]
