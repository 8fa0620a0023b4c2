"""Pieces shared by several models: backbones, patch embedding, neighbour search, coreset."""

from .backbone import Backbone

__all__ = ["Backbone"]
