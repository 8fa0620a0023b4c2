"""LDKNN: nearest-neighbour anomaly scores corrected by the memory bank's local density."""

from .lightning_model import Ldknn
from .settings import LdknnSettings
from .torch_model import LdknnModel

__all__ = ["Ldknn", "LdknnModel", "LdknnSettings"]
