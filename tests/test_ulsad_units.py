"""Ulsad formulas against slow references; shapes; argument checks (SPEC §7)."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from anomalib_pdae.models.ulsad import Ulsad, UlsadModel
from anomalib_pdae.models.ulsad.autoencoders import GlobalImageAutoencoder, LocalFeatureAutoencoder
from anomalib_pdae.models.ulsad.loss import attention, feature_distance
from anomalib_pdae.models.ulsad.torch_model import quantiles

SIZE = 64
CLOSE = {"rtol": 1e-5, "atol": 1e-6}  # float32 results against float64 references


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def model() -> UlsadModel:
    torch.manual_seed(0)
    return UlsadModel("resnet18", pre_trained=False, feature_dim=16, image_size=(SIZE, SIZE))


def _slow_distance(a: torch.Tensor, b: torch.Tensor, weight: float) -> torch.Tensor:
    batch, channels, height, width = a.shape
    out = torch.zeros(batch, height, width, dtype=torch.float64)
    for n in range(batch):
        for i in range(height):
            for j in range(width):
                u, v = a[n, :, i, j].double(), b[n, :, i, j].double()
                squared = sum((u[c] - v[c]) ** 2 for c in range(channels)) / channels
                cosine = (u @ v) / (u.norm() * v.norm())
                out[n, i, j] = squared + weight * (1 - cosine)
    return out


def _slow_attention(query: torch.Tensor, key_value: torch.Tensor) -> torch.Tensor:
    batch, channels, height, width = key_value.shape
    q = query.double().reshape(batch, channels, -1)
    kv = key_value.double().reshape(batch, channels, -1)
    out = torch.zeros_like(kv)
    for n in range(batch):
        for i in range(height * width):
            scores = [float(q[n, :, i] @ kv[n, :, j]) / math.sqrt(channels) for j in range(height * width)]
            top = max(scores)
            weights = [math.exp(s - top) for s in scores]
            total = sum(weights)
            out[n, :, i] = sum(w / total * kv[n, :, j] for j, w in enumerate(weights))
    return out.reshape(batch, channels, height, width)


@pytest.mark.parametrize("weight", [0.0, 0.5, 2.0])
def test_feature_distance_matches_reference(weight: float) -> None:
    a = torch.randn(2, 5, 3, 4, generator=_generator(1))
    b = torch.randn(2, 5, 3, 4, generator=_generator(2))
    got = feature_distance(a, b, weight)
    torch.testing.assert_close(got.double(), _slow_distance(a, b, weight), rtol=1e-5, atol=1e-6)


def test_feature_distance_zero_for_equal_maps_and_cosine_only_for_scaled_ones() -> None:
    a = torch.randn(1, 6, 2, 2, generator=_generator(3))
    assert feature_distance(a, a, 0.5).abs().max() < 1e-6
    # b = 2a: squared part mean_c a², cosine part 0
    torch.testing.assert_close(feature_distance(a, 2 * a, 0.5), a.pow(2).mean(1), rtol=1e-5, atol=1e-6)


def test_attention_matches_reference() -> None:
    query = torch.randn(2, 4, 3, 3, generator=_generator(4))
    key_value = torch.randn(2, 4, 3, 3, generator=_generator(5))
    torch.testing.assert_close(
        attention(query, key_value).double(), _slow_attention(query, key_value), **CLOSE
    )
    torch.testing.assert_close(
        attention(key_value, key_value).double(), _slow_attention(key_value, key_value), **CLOSE
    )


def test_attention_of_constant_keys_is_their_mean() -> None:
    key_value = torch.randn(1, 3, 2, 2, generator=_generator(6))
    out = attention(torch.zeros(1, 3, 2, 2), key_value)  # all scores equal: uniform weights
    expected = key_value.mean(dim=(2, 3), keepdim=True).expand_as(key_value)
    torch.testing.assert_close(out, expected)


def test_losses_are_the_three_distances(model: UlsadModel) -> None:
    images = torch.rand(2, 3, SIZE, SIZE, generator=_generator(7))
    model.train()
    with torch.no_grad():
        terms = model(images)
        phi, glob, local, local_global = model.branches(images)
    d = model.feature_dim
    assert local.shape == phi.shape == glob.shape == local_global.shape == (2, d, 8, 8)
    sa, ca = _slow_attention(phi, phi), _slow_attention(glob, phi)
    expected = [
        _slow_distance(phi, local, 0.5).mean(),
        _slow_distance(sa.float(), ca.float(), 0.5).mean(),
        _slow_distance(glob, local_global, 0.5).mean(),
    ]
    for got, want in zip(terms, expected, strict=True):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-6)


def test_features_pool_and_standardise(model: UlsadModel) -> None:
    images = torch.rand(3, 3, SIZE, SIZE, generator=_generator(8))
    layer2, layer3 = model.features.backbone(images)
    upsampled = F.interpolate(layer3, size=layer2.shape[-2:], mode="bilinear", align_corners=False)
    stacked = torch.cat([layer2, upsampled], 1)  # 128 + 256 channels
    flat = stacked.permute(0, 2, 3, 1).reshape(-1, 1, stacked.shape[1])
    pooled = F.adaptive_avg_pool1d(flat, 16).reshape(3, 8, 8, 16).permute(0, 3, 1, 2)
    torch.testing.assert_close(model.features.pooled(images), pooled, rtol=1e-5, atol=1e-5)

    features = UlsadModel("resnet18", pre_trained=False, feature_dim=16, image_size=(SIZE, SIZE)).features
    features.backbone.load_state_dict(model.features.backbone.state_dict())
    assert not bool(features.fitted)
    features.fit([images[:2], images[2:]])
    assert bool(features.fitted)
    mean = pooled.double().mean(dim=(0, 2, 3))
    std = pooled.double().std(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(features.mean.flatten().double(), mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(features.std.flatten().double(), std, rtol=1e-4, atol=1e-6)
    standardised = features(images)
    torch.testing.assert_close(standardised.mean(dim=(0, 2, 3)), torch.zeros(16), rtol=0, atol=1e-4)


def test_quantiles_match_torch() -> None:
    values = torch.randn(1001, generator=_generator(9))
    torch.testing.assert_close(
        quantiles(values, [0.9, 0.995]), torch.quantile(values, torch.tensor([0.9, 0.995]))
    )


def test_inference_scales_blurs_and_averages(model: UlsadModel) -> None:
    images = torch.rand(2, 3, SIZE, SIZE, generator=_generator(10))
    model.eval()
    model.calibrate([images])
    local, glob = model.raw_maps(images)
    local_q = torch.quantile(local.flatten(), torch.tensor([0.9, 0.995]))
    global_q = torch.quantile(glob.flatten(), torch.tensor([0.9, 0.995]))
    torch.testing.assert_close(model.local_quantiles, local_q)
    torch.testing.assert_close(model.global_quantiles, global_q)

    def blur(x: torch.Tensor) -> torch.Tensor:  # separable Gaussian, sigma 4, 33 taps, reflect
        taps = torch.arange(33.0) - 16
        kernel = torch.exp(-(taps**2) / (2 * 16.0))
        kernel = kernel / kernel.sum()
        x = F.pad(x, (16, 16, 16, 16), mode="reflect")
        x = F.conv2d(x, kernel.view(1, 1, 1, -1))
        return F.conv2d(x, kernel.view(1, 1, -1, 1))

    scaled_local = 0.1 * (local - local_q[0]) / (local_q[1] - local_q[0])
    scaled_global = 0.1 * (glob - global_q[0]) / (global_q[1] - global_q[0])
    expected = 0.5 * blur(scaled_local) + 0.5 * blur(scaled_global)
    out = model(images)
    torch.testing.assert_close(out.anomaly_map, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.pred_score, expected.flatten(1).max(1).values, rtol=1e-4, atol=1e-5)


def test_uncalibrated_scaling_is_identity() -> None:
    torch.manual_seed(0)
    model = UlsadModel("resnet18", pre_trained=False, feature_dim=8, image_size=(SIZE, SIZE), blur_sigma=0.1)
    model.eval()
    images = torch.rand(1, 3, SIZE, SIZE, generator=_generator(11))
    local, glob = model.raw_maps(images)
    torch.testing.assert_close(model(images).anomaly_map, 0.5 * (local + glob), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("size", "grid"), [((256, 256), (32, 32)), ((96, 160), (12, 20)), ((64, 32), (8, 4))]
)
def test_autoencoder_shapes(size: tuple[int, int], grid: tuple[int, int]) -> None:
    glob = GlobalImageAutoencoder(size, out_channels=8)
    assert glob(torch.rand(2, 3, *size), grid=grid).shape == (2, 8, *grid)
    assert LocalFeatureAutoencoder(8)(torch.rand(2, 8, *grid)).shape == (2, 16, *grid)


def test_default_local_autoencoder_is_the_spec_one() -> None:
    ae = LocalFeatureAutoencoder()
    convs = [m for m in ae.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]
    shapes = [(m.in_channels, m.out_channels, m.stride[0]) for m in convs]
    assert shapes == [
        (384, 768, 2),
        (768, 1536, 2),
        (1536, 1536, 1),
        (1536, 768, 2),
        (768, 384, 2),
        (384, 768, 1),
    ]
    assert not isinstance(ae.decoder[-1][-1], torch.nn.ReLU)
    assert isinstance(LocalFeatureAutoencoder(4, output_relu=True).decoder[-1][-1], torch.nn.ReLU)


def test_model_output_shapes(model: UlsadModel) -> None:
    model.eval()
    out = model(torch.rand(3, 3, SIZE, SIZE, generator=_generator(12)))
    assert out.pred_score.shape == (3,)
    assert out.anomaly_map.shape == (3, 1, SIZE, SIZE)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"feature_dim": 0}, "feature_dim"),
        ({"image_size": (60, 64)}, "image_size must be a multiple of 32"),
        ({"image_size": (16, 16)}, "image_size"),
        ({"lambda_attention": -1.0}, "lambda_attention"),
        ({"quantile_low": 0.99, "quantile_high": 0.9}, "quantile_low and quantile_high"),
        ({"blur_sigma": 0.0}, "blur_sigma"),
        ({"lr": 0.0}, "lr"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"holdout_ratio": 1.0}, "holdout_ratio"),
        ({"backbone": "resnet_18"}, "Unknown backbone"),
        ({"layers": ("layer9",)}, "no feature layer"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, match: str) -> None:
    arguments = {"backbone": "resnet18", "pre_trained": False, "feature_dim": 8, "image_size": (SIZE, SIZE)}
    with pytest.raises(ValueError, match=match):
        Ulsad(**(arguments | kwargs))


@pytest.mark.parametrize("name", ["mvtec", "loco"])
def test_configs_state_the_defaults(name: str) -> None:
    config = yaml.safe_load((Path(__file__).parents[1] / "configs" / "ulsad" / f"{name}.yaml").read_text())
    assert config["model"]["class_path"] == "Ulsad"
    defaults = {key: p.default for key, p in inspect.signature(Ulsad).parameters.items()}
    for key, value in config["model"]["init_args"].items():
        default = list(defaults[key]) if isinstance(defaults[key], tuple) else defaults[key]
        assert value == default, key
    assert config["trainer"]["max_epochs"] == 200
    assert config["data"]["init_args"]["train_batch_size"] == 8
    assert config["data"]["init_args"]["val_split_mode"] in {"from_train", "from_dir"}  # never the test set


def _training_split(root: Path, n_train: int):
    from anomalib.data import MVTecAD

    from anomalib_pdae.data.synthetic import make_synthetic_dataset

    make_synthetic_dataset(root, "few", n_train=n_train, n_test_good=1, n_test_defect=1, image_size=32)
    datamodule = MVTecAD(root=root, category="few", num_workers=0)
    datamodule.setup()
    return datamodule.train_data


@pytest.mark.parametrize(("n_train", "held_out"), [(5, 1), (24, 2), (3, 1)])
def test_small_training_sets_hold_out_at_least_one_image(n_train: int, held_out: int, tmp_path: Path) -> None:
    """10 % of 5 images rounds to none: one is held out instead, and the rest are trained on."""
    from anomalib_pdae.models.ulsad.lightning_model import _hold_out

    train, holdout = _hold_out(_training_split(tmp_path, n_train), 0.1, seed=0)
    assert (len(train), len(holdout)) == (n_train - held_out, held_out)
    assert set(train.samples.image_path).isdisjoint(holdout.samples.image_path)


def test_too_few_training_images_to_hold_out_one(tmp_path: Path) -> None:
    from anomalib_pdae.models.ulsad.lightning_model import _hold_out

    message = r"Ulsad needs at least 3 training images .* has 2\. Add normal images"
    with pytest.raises(ValueError, match=message):
        _hold_out(_training_split(tmp_path, 2), 0.1, seed=0)
