"""Before a run: the inputs the jobs cannot find (:func:`missing`), and every job's estimated duration."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from .build import weights_tags
from .timing import timed

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
HOW = (
    "Estimated duration = backbone forward seconds per image, probed now on this machine ({device}) × "
    "images passed, + LDKNN's local densities at the rate faiss reached now ({rate:.1f} G/s); data "
    "loading, coresets and Patchcore's search are not counted: a lower bound (benchmarks/README.md)."
)


def _hub_cached(tag: str) -> bool:
    """Whether timm's pretrained weights for ``tag`` are in the local Hugging Face cache."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    config = timm.models.get_pretrained_cfg(tag)
    if config is None or not config.hf_hub_id:
        return False
    files = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
    return any(isinstance(try_to_load_from_cache(config.hf_hub_id, name), str) for name in files)


def missing(specs: list[dict]) -> list[str]:
    """What the jobs need and do not find: dataset folders, weights files, uncached hub weights."""
    from huggingface_hub.constants import HF_HUB_CACHE

    problems = []
    for spec in specs:
        folder = Path(spec["root"]) / spec["category"]
        if not folder.is_dir():
            problems.append(f"dataset folder {folder} ({spec['dataset']}, category {spec['category']})")
        if spec.get("weights") and not Path(spec["weights"]).is_file():
            problems.append(f"weights file {spec['weights']}")
        uncached = [] if spec.get("weights") else [tag for tag in weights_tags(spec) if not _hub_cached(tag)]
        problems += [
            f"weights {tag}: not in the Hugging Face cache {HF_HUB_CACHE} (no --weights FILE)"
            for tag in uncached
        ]
    return list(dict.fromkeys(problems))


def _count_images(folder: Path) -> int | None:
    if folder.is_dir():
        return sum(path.suffix.lower() in IMAGE_SUFFIXES for path in folder.rglob("*"))
    return None


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@cache
def _forward_seconds(name: str, layers: tuple[str, ...], size: int) -> tuple[float, int]:
    """Seconds per image of one forward pass, and the first layer's stride."""
    import torch

    from anomalib_pdae.models.components.backbone import Backbone

    model = Backbone(name, list(layers), pre_trained=False).to(_device())
    images = torch.rand(2, 3, size, size, device=_device())
    with torch.no_grad():
        model(images)  # warm-up
        best = min(timed(model, images)[1] for _ in range(2))
    return best / len(images), model.strides[0]


@cache
def _faiss_rate() -> float:
    """Exact k-NN multiply-adds per second of faiss on this machine (2,048 × 32,768 × 256)."""
    import faiss
    import numpy as np

    generator = np.random.default_rng(0)
    x = generator.standard_normal((2048, 256), dtype=np.float32)
    y = generator.standard_normal((32768, 256), dtype=np.float32)
    faiss.knn(x[:64], y, 10)
    return x.shape[0] * y.shape[0] * x.shape[1] / timed(faiss.knn, x, y, 10)[1]


def estimate_seconds(spec: dict, n_train: int, n_test: int) -> float:
    """A job's duration from the probes (README.md, "Before a run: --plan")."""
    size, args = spec["image_size"], spec["init_args"]
    networks = (
        args["backbones"]
        if spec["model"] == "Pdae"
        else [(args["backbone"], args.get("layers") or [args.get("layer")])]
    )
    probes = [_forward_seconds(name, tuple(layers), size) for name, layers in networks]
    forward, stride = sum(p[0] for p in probes), probes[0][1]
    fits = len(spec.get("sweep") or [{}])
    variants = spec.get("variants") or []
    seconds = forward * (fits * n_train + max(len(variants), 1) * fits * n_test)
    if spec["model"] == "Pdae":
        seconds += forward * 3 * spec.get("max_epochs", 1) * n_train
    if tune := spec.get("finetune"):
        scale = (tune.get("image_size", size) / size) ** 2
        seconds += forward * scale * 3 * tune["num_updates"] * tune["images_per_update"]
    if spec["model"] == "Ldknn":
        scorers = [v["scorer"] for v in variants] or [spec["init_args"].get("scorer", "ldknn")]
        # Each kept bank patch (coreset) searched among all training patches.
        bank = n_train * (size // stride) ** 2
        ratios = [item.get("init_args", {}).get("coreset_ratio") for item in spec.get("sweep") or [{}]]
        kept = sum(bank * (ratio or spec["init_args"].get("coreset_ratio", 1.0)) for ratio in ratios)
        flops = kept * bank * spec["init_args"].get("embedding_dim", 512)
        seconds += sum(s != "knn" for s in scorers) * flops / _faiss_rate()
    return seconds


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def plan(specs: list[dict]) -> str:
    """Every job: dataset folder, categories, model, arguments, weights, estimated duration."""
    lines, total = [], 0.0
    for spec in specs:
        folder = Path(spec["root"]) / spec["category"]
        n_train, n_test = _count_images(folder / "train"), _count_images(folder / "test")
        found = n_train is not None and n_test is not None
        tags = weights_tags(spec)
        cached = "in the local cache" if all(map(_hub_cached, tags)) else "NOT in the local cache"
        weights = spec.get("weights") or f"{'+'.join(tags)} (hub, {cached})"
        extra = {key: spec[key] for key in ("variants", "sweep", "finetune") if spec.get(key)}
        state = "found" if found else "MISSING"
        lines += [
            spec["job"],
            f"  dataset  {spec['dataset']} / {spec['category']}: {folder} ({state})",
            f"  model    {spec['model']} {spec['method']!r}, weights {weights}",
            f"  args     {spec['init_args']} {extra or ''}".rstrip(),
        ]
        if not found:
            lines.append("  estimate unknown (no images to count)")
            continue
        n_train = min(n_train, spec["n_train"] or n_train)
        n_test = min(n_test, spec["n_test"] or n_test)
        seconds = estimate_seconds(spec, n_train, n_test)
        total += seconds
        lines.append(f"  estimate {_duration(seconds)} ({n_train} training, {n_test} test images)")
    how = HOW.format(device=_device(), rate=_faiss_rate() / 1e9)
    return "\n".join([*lines, "", f"Total of the jobs estimated: {_duration(total)}.", how])
