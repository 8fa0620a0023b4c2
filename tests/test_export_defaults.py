"""The plugin's export defaults: in-place activations traced out of place, then restored."""

from __future__ import annotations

import pytest
from torch import nn

from anomalib_pdae.models.components.defaults import _out_of_place


def test_in_place_flags_are_off_inside_and_restored_after() -> None:
    model = nn.Sequential(nn.ReLU(inplace=True), nn.ReLU6(), nn.Hardswish(inplace=True))
    with _out_of_place(model):
        assert [module.inplace for module in model] == [False, False, False]
    assert [module.inplace for module in model] == [True, False, True]


def test_flags_are_restored_when_the_export_fails() -> None:
    model = nn.Sequential(nn.ReLU(inplace=True))
    with pytest.raises(RuntimeError, match="export failed"), _out_of_place(model):
        raise RuntimeError("export failed")
    assert model[0].inplace is True
