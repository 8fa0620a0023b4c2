"""LdknnModel end to end: image score, anomaly map, fit errors, parity with anomalib's Patchcore."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from anomalib.models.image.patchcore.torch_model import PatchcoreModel
from scipy import ndimage

from anomalib_pdae.models.ldknn import LdknnModel, LdknnSettings
from anomalib_pdae.models.ldknn.anomaly_map import AnomalyMap
from anomalib_pdae.models.ldknn.scorers import fit_statistics, score


def images(count: int, seed: int, size: int = 64) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


def small(**settings) -> LdknnModel:
    """A random-initialised ResNet-18 LDKNN with ``settings`` (LdknnSettings fields)."""
    return LdknnModel(LdknnSettings(**({"backbone": "resnet18"} | settings)), pre_trained=False)


@pytest.fixture(scope="module")
def fitted() -> LdknnModel:
    torch.manual_seed(0)
    model = small(k=3, embedding_dim=64).train()
    model.fit(model(images(4, seed=1)), progress=False)
    return model.eval()


def test_image_score_is_max_of_3x3_block_means(fitted):
    batch = images(2, seed=2)
    out = fitted(batch)
    embedding = fitted.embed(batch)
    queries = embedding.permute(0, 2, 3, 1).reshape(-1, embedding.shape[1])
    tables = {"local_density": fitted.local_density}
    patch = score("ldknn", queries, fitted.memory_bank, tables, k=3).reshape(2, 8, 8)
    expected = torch.stack(
        [
            max(patch[b, 3 * i : 3 * i + 3, 3 * j : 3 * j + 3].mean() for i in range(2) for j in range(2))
            for b in range(2)
        ]
    )  # 8×8 grid: two full 3×3 blocks per axis, the trailing rows and columns dropped
    torch.testing.assert_close(out.pred_score, expected, rtol=1e-5, atol=1e-5)
    assert out.anomaly_map.shape == (2, 1, 64, 64)


def test_plain_max_image_score_and_map_peak(fitted):
    fitted = copy.deepcopy(fitted)
    fitted.rescore(image_score="max")
    batch = images(1, seed=3)
    out = fitted(batch)
    embedding = fitted.embed(batch)
    queries = embedding.permute(0, 2, 3, 1).reshape(-1, embedding.shape[1])
    patch = score("ldknn", queries, fitted.memory_bank, {"local_density": fitted.local_density}, k=3)
    torch.testing.assert_close(out.pred_score, patch.max().reshape(1))


def test_scores_do_not_depend_on_batch_composition(fitted):
    batch = images(3, seed=4)
    together = fitted(batch).pred_score
    alone = torch.cat([fitted(batch[i : i + 1]).pred_score for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_training_images_score_lower_than_noise(fitted):
    normal = fitted(images(4, seed=1)).pred_score
    odd = fitted(torch.zeros(2, 3, 64, 64)).pred_score
    assert normal.max() < odd.min()


@pytest.mark.parametrize("scorer", ["knn", "kth_nn", "lof", "ldof"])
def test_every_scorer_runs_end_to_end(scorer):
    model = small(k=2, scorer=scorer, embedding_dim=32).train()
    model.fit(model(images(2, seed=5)), progress=False)
    out = model.eval()(images(2, seed=6))
    assert torch.isfinite(out.pred_score).all() and torch.isfinite(out.anomaly_map).all()


def test_coreset_shrinks_bank_but_keeps_densities_from_the_full_bank():
    model = small(k=2, coreset_ratio=0.25, embedding_dim=32).train()
    embeddings = model(images(2, seed=7))
    model.fit(embeddings, progress=False)
    assert len(model.memory_bank) == round(len(embeddings) * 0.25) == len(model.local_density)


def test_k_not_smaller_than_bank_is_rejected():
    model = small(k=40, coreset_ratio=0.5, embedding_dim=32).train()
    with pytest.raises(ValueError, match=r"k=40 must be smaller than the memory bank \(32 patches"):
        model.fit(model(images(1, seed=8)), progress=False)


def test_empty_training_set_is_rejected():
    model = small()
    with pytest.raises(ValueError, match="training set is empty"):
        model.fit(torch.empty(0, 512), progress=False)


def test_unfitted_model_says_so():
    model = small().eval()
    with pytest.raises(RuntimeError, match="not fitted: its memory bank is empty"):
        model(images(1, seed=9))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "k .* must be an integer >= 1"),
        ({"ld_coefficient": -1.0}, "ld_coefficient .* must be >= 0"),
        ({"density_mode": "divide"}, "density_mode must be one of"),
        ({"image_score": "mean"}, "image_score must be one of"),
        ({"scorer": "svm"}, "scorer must be one of"),
        ({"scorer": "ldof", "k": 1}, "k must be >= 2 for scorer='ldof'"),
        ({"coreset_ratio": 0.0}, "coreset_ratio must be in"),
        ({"aggregation": "sum"}, "aggregation must be one of"),
        ({"backbone": "resnet1800"}, "Unknown backbone 'resnet1800'"),
        ({"layers": ["layer2", "layer7"]}, "no feature layer named 'layer7'. Available layers: act1, layer1"),
    ],
)
def test_invalid_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        small(**kwargs)


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        LdknnModel(LdknnSettings(backbone="resnet18"), weights=tmp_path / "nope.safetensors")


def test_parity_with_anomalib_patchcore():
    """K=1, gamma=0, anomalib aggregation, no coreset, plain L2, plain max: Patchcore's scores."""
    torch.manual_seed(0)
    ours = small(k=1, ld_coefficient=0.0, aggregation="anomalib", distance="euclidean", image_score="max")
    theirs = PatchcoreModel(
        layers=["layer2", "layer3"], backbone="resnet18", pre_trained=False, num_neighbors=1
    )
    theirs.feature_extractor.feature_extractor.load_state_dict(ours.feature_extractor.model.state_dict())
    train, test = images(3, seed=10, size=96), images(4, seed=11, size=96)
    normalise = ours.feature_extractor.normalize

    ours.train()
    ours.fit(ours(train), progress=False)
    theirs.train()
    with torch.no_grad():
        theirs.memory_bank = theirs(normalise(train))
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        expected = theirs(normalise(test)).pred_score
    got = ours(test).pred_score
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got, got[0])  # the images really differ


def test_bilinear_map_is_smooth_upsampling_of_patch_scores(fitted):
    fitted = copy.deepcopy(fitted)
    batch = images(1, seed=12)
    for blur in fitted.anomaly_map.blur:  # identity blur: compare the raw upsampling
        identity = torch.zeros_like(blur.kernel)
        identity[..., blur.height // 2, blur.width // 2] = 1.0
        blur.kernel = identity
    embedding = fitted.embed(batch)
    queries = embedding.permute(0, 2, 3, 1).reshape(-1, embedding.shape[1])
    patch = score("ldknn", queries, fitted.memory_bank, {"local_density": fitted.local_density}, k=3)
    expected = F.interpolate(patch.reshape(1, 1, 8, 8), size=(64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(fitted(batch).anomaly_map, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("scorer", "k"), [("knn", 1), ("lof_reb", 2), ("ldknn", 2)])
def test_rescore_scores_like_a_model_fitted_with_those_settings(scorer, k):
    base = small(k=3, embedding_dim=32).train()
    embeddings = base(images(2, seed=13))
    rescored = copy.deepcopy(base)
    rescored.fit(embeddings, progress=False)
    rescored.rescore(scorer=scorer, k=k)
    fitted = small(k=k, scorer=scorer, embedding_dim=32)
    fitted.load_state_dict(base.state_dict())
    fitted.fit(embeddings, progress=False)
    batch = images(2, seed=14)
    expected, got = fitted.eval()(batch), rescored.eval()(batch)
    torch.testing.assert_close(got.pred_score, expected.pred_score, rtol=0, atol=0)
    torch.testing.assert_close(got.anomaly_map, expected.anomaly_map, rtol=0, atol=0)
    assert rescored.settings == fitted.settings


def test_rescore_recomputes_tables_only_when_scorer_k_or_distance_change():
    model = small(k=2, coreset_ratio=0.25, embedding_dim=32).train()
    embeddings = model(images(2, seed=15))
    model.fit(embeddings, progress=False)
    from_full_bank = model.local_density.clone()
    model.rescore(image_score="max", map_score="distance")
    torch.testing.assert_close(model.local_density, from_full_bank, rtol=0, atol=0)
    model.rescore(k=3)  # the full bank is not kept: the coreset's own densities
    bank = model.memory_bank
    expected = fit_statistics("ldknn", bank, bank, 3, progress=False)["local_density"]
    torch.testing.assert_close(model.local_density, expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"coreset_ratio": 0.5}, "rescore cannot change coreset_ratio: they shape the memory bank"),
        ({"backbone": "resnet34", "layers": ["layer1"]}, "rescore cannot change backbone, layers"),
        ({"k": 0}, r"k \(neighbourhood size\) must be an integer >= 1"),
        ({"scorer": "svm"}, "scorer must be one of"),
        ({"k": 256}, r"k=256 must be smaller than the memory bank \(256 patches"),
        ({"search": "approximate", "candidates": 257, "projection_dim": 8}, "candidates=257 exceeds"),
    ],
)
def test_rescore_refuses_what_fit_or_construction_refuses(fitted, changes, message):
    settings = fitted.settings
    with pytest.raises(ValueError, match=message):
        fitted.rescore(**changes)
    assert fitted.settings == settings


def test_rescore_of_an_unfitted_model_says_so():
    with pytest.raises(RuntimeError, match="not fitted"):
        small().rescore(k=2)


@pytest.mark.parametrize(
    ("ratio", "stages"), [(1.0, {"statistics", "search"}), (0.5, {"coreset", "statistics", "search"})]
)
def test_fit_times_its_own_stages(ratio, stages):
    model = small(k=2, coreset_ratio=ratio, embedding_dim=32).train()
    model.fit(model(images(1, seed=16)), progress=False)
    assert set(model.timer.seconds) == stages
    assert all(seconds >= 0 for seconds in model.timer.seconds.values())


def test_anomaly_map_blur_is_scipys_and_loads_a_single_kernel_checkpoint():
    """The row-then-column blur equals scipy's σ=4 filter; a state dict with one k×k kernel still loads."""
    patches = torch.rand(2, 1, 8, 6, generator=torch.Generator().manual_seed(0))
    got = AnomalyMap(sigma=4.0)(patches, (64, 48))
    upsampled = F.interpolate(patches, size=(64, 48), mode="bilinear", align_corners=False)[:, 0].double()
    expected = np.stack([ndimage.gaussian_filter(m.numpy(), sigma=4, mode="reflect") for m in upsampled])
    np.testing.assert_allclose(got[:, 0].numpy(), expected, atol=1e-6)
    fresh = AnomalyMap(sigma=4.0)
    fresh.load_state_dict({"blur.kernel": torch.rand(1, 1, 33, 33)})
    torch.testing.assert_close(fresh(patches, (64, 48)), got)


def test_score_runs_forward_a_few_images_at_a_time(fitted, monkeypatch: pytest.MonkeyPatch):
    from anomalib_pdae.models.ldknn import torch_model

    batch = images(5, seed=7)
    whole = fitted(batch)
    monkeypatch.setattr(torch_model, "CHUNK_IMAGES", 2)
    sizes = []
    hook = fitted.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
    try:
        chunked = fitted.score(batch)
    finally:
        hook.remove()
    assert sizes == [2, 2, 1]
    torch.testing.assert_close(chunked.pred_score, whole.pred_score)
    torch.testing.assert_close(chunked.anomaly_map, whole.anomaly_map)


class _ValidationProbe:
    """Stands in for a Lightning module: records what ``validation_step`` received."""

    def __init__(self) -> None:
        self.calls = []

    def validation_step(self, batch, *args, **kwargs):
        self.calls.append((batch, args))
        return "scored"


@pytest.mark.parametrize("name", ["Ldknn", "Reb"])
def test_ldknn_and_reb_test_as_they_validate(name: str):
    import anomalib_pdae

    probe = _ValidationProbe()
    assert getattr(anomalib_pdae, name).__dict__["test_step"](probe, "batch", 3) == "scored"
    assert probe.calls == [("batch", (3,))]
