"""LDKNN's one configuration: the flat arguments of Ldknn and Reb, validated once, frozen."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from anomalib_pdae import Ldknn, Reb
from anomalib_pdae.models.ldknn import LdknnSettings

FIELDS = {field.name: field.default for field in dataclasses.fields(LdknnSettings)}
# The hyper-parameter names Ldknn's checkpoints have always stored: they must keep loading.
CHECKPOINT_NAMES = {
    "backbone", "layers", "pre_trained", "weights", "k", "ld_coefficient", "density_mode",
    "image_score", "scorer", "distance", "coreset_ratio", "embedding_dim", "aggregation",
    "map_score", "search", "candidates", "projection_dim", "density_search",
}  # fmt: skip


@pytest.mark.parametrize("model_class", [Ldknn, Reb])
def test_flat_arguments_are_the_settings_fields_with_their_defaults(model_class) -> None:
    parameters = inspect.signature(model_class).parameters
    defaults = {name: parameters[name].default for name in FIELDS if name in parameters}
    assert defaults == FIELDS


def test_ldknn_checkpoints_keep_their_hyper_parameter_names() -> None:
    model = Ldknn(backbone="resnet18", pre_trained=False, k=3, scorer="knn")
    assert set(model.hparams) == CHECKPOINT_NAMES
    assert Ldknn(**model.hparams).model.settings == model.model.settings


@pytest.mark.parametrize("model_class", [Ldknn, Reb])
def test_the_models_build_one_settings_record_from_their_arguments(model_class) -> None:
    model = model_class(
        backbone="resnet18", pre_trained=False, k=7, layers=["layer1", "layer2"], map_score="distance"
    )
    settings = model.model.settings if model_class is Ldknn else model.model.ldknn.settings
    assert settings == LdknnSettings(
        backbone="resnet18", k=7, layers=("layer1", "layer2"), map_score="distance"
    )


def test_settings_are_frozen_and_hold_layers_as_a_tuple() -> None:
    settings = LdknnSettings(layers=["layer1", "layer2"])
    assert settings.layers == ("layer1", "layer2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.k = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("backbone", "embedding_dim", "aggregation", "width", "features"),
    [
        ("resnet18.tv_in1k", None, "reference", 512, 512),
        ("wide_resnet50_2.tv_in1k", None, "reference", 1024, 1024),
        ("wide_resnet50_2.tv_in1k", 256, "reference", 256, 256),
        ("resnet18", None, "anomalib", 512, None),  # concatenated layers: width known after fitting
    ],
)
def test_embedding_width_is_rebs_unless_given(backbone, embedding_dim, aggregation, width, features) -> None:
    settings = LdknnSettings(backbone=backbone, embedding_dim=embedding_dim, aggregation=aggregation)
    assert (settings.embedding_width, settings.search_features) == (width, features)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"map_score": "pixels"}, "map_score must be one of 'score', 'distance'; got 'pixels'"),
        ({"distance": "cosine"}, "distance must be one of"),
        ({"coreset_ratio": 1.5}, r"coreset_ratio must be in \(0, 1\]"),
        ({"embedding_dim": 0}, "embedding_dim must be a positive integer, got 0"),
        ({"aggregation": "sum"}, "aggregation must be one of"),
        ({"scorer": "lof_reb", "k": 1}, "k must be >= 2 for scorer='lof_reb'"),
    ],
)
def test_invalid_settings_are_named(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LdknnSettings(**changes)


def test_from_arguments_takes_the_fields_and_ignores_the_rest() -> None:
    settings = LdknnSettings.from_arguments({"k": 9, "weights": "file.safetensors", "self": object()})
    assert settings == LdknnSettings(k=9)
