"""PDAE pieces against slow, obviously-correct references: features, AE, P_k, scores, loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anomalib_pdae.data.cutpaste import CutPaste
from anomalib_pdae.models.components.multi_backbone import MultiBackbone
from anomalib_pdae.models.pdae import Pdae, PdaeLoss, PdaeModel
from anomalib_pdae.models.pdae.autoencoder import FeatureAutoEncoder, default_widths
from anomalib_pdae.models.pdae.torch_model import (
    cross_dimension_score,
    cross_patch_score,
    patch_distances,
)

SMALL = [("resnet18", ["layer1", "layer2"])]


def naive_pool(features: torch.Tensor, kernel_size: int, out_dim: int) -> np.ndarray:
    """P_k as the authors compute it: unfold, then adaptive_avg_pool1d; ``(B, H·W, out_dim)``."""
    batch = features.shape[0]
    unfolded = F.unfold(features.double(), kernel_size, padding=kernel_size // 2)  # (B, C·k², HW)
    vectors = unfolded.permute(0, 2, 1).reshape(-1, 1, unfolded.shape[1])
    return F.adaptive_avg_pool1d(vectors, out_dim).reshape(batch, -1, out_dim).numpy()


def gaussian_3x3(sigma: float) -> torch.Tensor:
    kernel = torch.tensor(
        [[math.exp(-(x * x + y * y) / (2 * sigma**2)) for x in (-1, 0, 1)] for y in (-1, 0, 1)]
    )
    return kernel / kernel.sum()


# --- multi-backbone features -----------------------------------------------------------------


def test_multi_backbone_matches_manual_upsample_concat_blur():
    torch.manual_seed(0)
    extractor = MultiBackbone(
        [("resnet18", ["layer1", "layer2"]), ("mobilenetv2_100", ["blocks.4"])], pre_trained=False
    )
    images = torch.rand(2, 3, 64, 64)
    maps = [f for backbone in extractor.backbones for f in backbone(images)]
    assert [tuple(m.shape[-2:]) for m in maps] == [(16, 16), (8, 8), (4, 4)]
    aligned = torch.cat(
        [F.interpolate(m, size=(16, 16), mode="bilinear", align_corners=False) for m in maps], 1
    )
    channels = aligned.shape[1]
    expected = F.conv2d(aligned, gaussian_3x3(4.0).expand(channels, 1, 3, 3), padding=1, groups=channels)
    assert extractor.channels == channels == 64 + 128 + 96
    torch.testing.assert_close(extractor(images), expected, rtol=1e-5, atol=1e-5)


def test_multi_backbone_rejects_unalignable_grids():
    extractor = MultiBackbone(SMALL, pre_trained=False)
    with pytest.raises(ValueError, match=r"cannot be aligned.*resnet18:layer2 13×13"):
        extractor.output_grid((100, 100))
    with pytest.raises(ValueError, match="cannot be aligned"):
        extractor(torch.rand(1, 3, 100, 100))
    coarse_first = MultiBackbone([("resnet18", ["layer2"]), ("resnet18", ["layer1"])], pre_trained=False)
    with pytest.raises(ValueError, match="finest layer first"):
        coarse_first.output_grid((64, 64))


def test_multi_backbone_argument_errors():
    with pytest.raises(ValueError, match="one entry per backbone"):
        MultiBackbone(SMALL, pre_trained=False, weights=[None, None])
    with pytest.raises(ValueError, match="pairs"):
        MultiBackbone([], pre_trained=False)
    with pytest.raises(ValueError, match="no feature layer named 'layer9'"):
        MultiBackbone([("resnet18", ["layer9"])], pre_trained=False)


# --- auto-encoder ----------------------------------------------------------------------------


def test_autoencoder_default_shapes_and_widths():
    assert default_widths(960) == [512, 256, 128]
    with torch.device("meta"):  # shapes only: the 960-channel AE at 96×96 costs ~70 GFLOPs a pass
        ae = FeatureAutoEncoder(960)
        features = torch.empty(2, 960, 96, 96)
        assert ae.encoder(features).shape == (2, 100, 6, 6)
        assert ae(features).shape == (2, 960, 96, 96)
    convs = [m for m in ae.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]
    assert [c.in_channels for c in convs] == [960, 512, 256, 128, 100, 128, 256, 512]
    assert [c.out_channels for c in convs] == [512, 256, 128, 100, 128, 256, 512, 960]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) and c.padding == (1, 1) for c in convs)


def test_default_model_is_the_papers_setup():
    with torch.device("meta"):  # real architectures and shapes, no weights or arithmetic
        model = PdaeModel(pre_trained=False)
    assert model.feature_extractor.channels == 256 + 512 + 192
    assert model.feature_extractor.output_grid((384, 384)) == (96, 96)
    assert model.autoencoder.hidden_widths == [512, 256, 128]
    with (
        torch.device("meta"),
        pytest.raises(ValueError, match=r"'cait_xxs24_384\.fb_dist_in1k' cannot take 320×320 inputs"),
    ):
        PdaeModel(pre_trained=False, image_size=(320, 320))


def test_autoencoder_small_config_and_init():
    torch.manual_seed(0)
    ae = FeatureAutoEncoder(72, hidden_widths=[48, 24], bottleneck_channels=16)
    features = torch.rand(3, 72, 16, 8)
    assert ae.encoder(features).shape == (3, 16, 2, 1)
    assert ae(features).shape == features.shape
    big = FeatureAutoEncoder(960)
    weights = torch.cat([m.weight.flatten() for m in big.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(weights.mean().item()) < 1e-3
    assert weights.std().item() == pytest.approx(0.02, rel=0.02)


def test_autoencoder_rejects_grids_it_cannot_round_trip():
    with pytest.raises(ValueError, match=r"cannot round-trip a 20×20 feature grid.*multiples of 16"):
        FeatureAutoEncoder(64).check_grid((20, 20))
    with pytest.raises(ValueError, match="cannot round-trip a 24×24"):
        PdaeModel(SMALL, image_size=(96, 96), pre_trained=False)  # layer1 grid 24×24, needs 16 | 24


# --- P_k, scores, loss -----------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "kernel_size", "dim"), [((2, 12, 9, 7), 5, 32), ((1, 40, 8, 8), 3, 64)])
def test_patch_distances_equal_the_unfold_form(shape, kernel_size, dim):
    torch.manual_seed(1)
    features, reconstruction = torch.randn(shape), torch.randn(shape)
    expected = np.abs(naive_pool(features, kernel_size, dim) - naive_pool(reconstruction, kernel_size, dim))
    got = patch_distances(features, reconstruction, kernel_size, dim)  # (B, dim, H, W)
    got = got.flatten(2).permute(0, 2, 1).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_cross_patch_and_cross_dimension_scores():
    torch.manual_seed(2)
    distances = torch.rand(3, 6, 4, 5)
    array = distances.flatten(2).permute(0, 2, 1).numpy()  # (B, patches, dims)
    for b in range(3):
        per_dim_max = [max(array[b, p, d] for p in range(20)) for d in range(6)]
        per_patch_mean = [sum(array[b, p, d] for d in range(6)) / 6 for p in range(20)]
        assert cross_patch_score(distances)[b].item() == pytest.approx(sum(per_dim_max) / 6, rel=1e-6)
        assert cross_dimension_score(distances)[b].item() == pytest.approx(max(per_patch_mean), rel=1e-6)


def test_model_scores_and_map_follow_the_definitions():
    torch.manual_seed(3)
    model = PdaeModel(SMALL, image_size=(64, 64), pre_trained=False, hidden_widths=[32], embedding_dim=48)
    model.score_weight = 0.3
    model.eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        output = model(images)
        features = model.feature_extractor(images)
        reconstruction = model.autoencoder(features)
    distances = np.abs(naive_pool(features, 5, 48) - naive_pool(reconstruction, 5, 48))  # (B, HW, 48)
    s_cp = distances.max(axis=1).mean(axis=1)
    s_cd = distances.mean(axis=2).max(axis=1)
    np.testing.assert_allclose(output.pred_score.numpy(), 0.3 * s_cp + 0.7 * s_cd, rtol=1e-5)
    coarse = torch.from_numpy(distances.mean(axis=2)).float().reshape(2, 1, 16, 16)
    expected_map = F.interpolate(coarse, size=(64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(output.anomaly_map, expected_map, rtol=1e-5, atol=1e-6)


def test_loss_matches_reference():
    torch.manual_seed(4)
    features, reconstruction = torch.randn(3, 20, 6, 5), torch.randn(3, 20, 6, 5)
    beta = 7.5
    mse = ((features.double() - reconstruction.double()) ** 2).mean().item()
    target, output = naive_pool(features, 3, 24), naive_pool(reconstruction, 3, 24)
    cosines = [
        (target[b].ravel() @ output[b].ravel()) / (np.linalg.norm(target[b]) * np.linalg.norm(output[b]))
        for b in range(3)
    ]
    expected = mse + beta * np.mean([1 - c for c in cosines])
    loss = PdaeLoss(beta=beta, patch_size=3, embedding_dim=24)
    assert loss(features, reconstruction).item() == pytest.approx(expected, rel=1e-5)
    assert loss(features, features).item() == pytest.approx(0.0, abs=1e-6)


def test_loss_gradient_reaches_reconstruction():
    features = torch.randn(2, 10, 4, 4)
    reconstruction = torch.zeros(2, 10, 4, 4, requires_grad=True)
    PdaeLoss(beta=1.0, embedding_dim=16)(features, reconstruction + 0.1).backward()
    assert reconstruction.grad is not None
    assert reconstruction.grad.abs().sum() > 0


# --- augmentation and arguments --------------------------------------------------------------


def test_cutpaste_copies_one_region_and_keeps_range():
    torch.manual_seed(5)
    images = torch.rand(8, 3, 64, 64)
    augmented = CutPaste()(images)
    assert augmented.shape == images.shape
    assert augmented.min() >= 0
    assert augmented.max() <= 1
    changed = (augmented != images).any(dim=1).flatten(1).float().mean(dim=1)
    assert (changed > 0).all()
    assert (changed < 0.5).all()


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("score_weight", 1.5, r"score_weight must be a number in \[0, 1\]"),
        ("score_patch_size", 4, "score_patch_size must be a positive odd integer"),
        ("lr_gamma", 0.0, r"lr_gamma must be a number in \(0, 1\]"),
        ("beta", -1.0, "beta must be a number >= 0"),
    ],
)
def test_pdae_rejects_bad_arguments(argument, value, message):
    with pytest.raises(ValueError, match=message):
        Pdae(backbones=SMALL, image_size=(64, 64), pre_trained=False, **{argument: value})


def test_pdae_unknown_layer_is_named():
    with pytest.raises(ValueError, match=r"no feature layer named 'features\.denseblock9'.*Available layers"):
        Pdae(backbones=[("densenet121", ["features.denseblock9"])], pre_trained=False)
