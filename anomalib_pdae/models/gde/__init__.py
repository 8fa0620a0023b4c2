"""GDE: Mahalanobis distance of pooled last-layer features to the Gaussian of the normal images."""

from .lightning_model import Gde
from .torch_model import GdeModel

__all__ = ["Gde", "GdeModel"]
