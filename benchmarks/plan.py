"""Before a run: the inputs the jobs cannot find (:func:`missing`), and every job's estimated duration."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from .build import weights_tags
from .timing import timed

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
HOW = (
    "Estimated duration = (a) backbone forward seconds per image, probed now on this machine "
    "({device}; the job's backbone and layers at its input size, random weights, batch 2, best of "
    "2 after a warm-up) × images passed (training images once per fit, test images once per "
    "variant, fine-tuning: updates × images per update × 3 for the backward pass, scaled by its "
    "input size; PDAE: epochs × training images × 3); + (b) LDKNN's local densities, (kept bank "
    "patches) × (all training patches) × D multiply-adds per scorer needing them, at the rate "
    "faiss reached now ({rate:.1f} G/s). Data loading, coresets and Patchcore's search are not "
    "counted: a lower bound."
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

    problems: dict[str, None] = {}
    for spec in specs:
        folder = Path(spec["root"]) / spec["category"]
        if not folder.is_dir():
            problems[f"dataset folder {folder} ({spec['dataset']}, category {spec['category']})"] = None
        if spec.get("weights"):
            if not Path(spec["weights"]).is_file():
                problems[f"weights file {spec['weights']}"] = None
            continue
        for tag in weights_tags(spec):
            if not _hub_cached(tag):
                problems[
                    f"weights {tag}: not in the Hugging Face cache {HF_HUB_CACHE} (no --weights FILE)"
                ] = None
    return list(problems)


def _count_images(folder: Path) -> int | None:
    if not folder.is_dir():
        return None
    return sum(1 for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES)


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


def _networks(spec: dict) -> list[tuple[str, tuple[str, ...]]]:
    args = spec["init_args"]
    if spec["model"] == "Pdae":
        return [(name, tuple(layers)) for name, layers in args["backbones"]]
    return [(args["backbone"], tuple(args.get("layers") or [args.get("layer")]))]


def estimate_seconds(spec: dict, n_train: int, n_test: int) -> float:
    """A job's duration from the probes (see :data:`HOW`)."""
    size = spec["image_size"]
    probes = [_forward_seconds(name, layers, size) for name, layers in _networks(spec)]
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
        lines.append(f"{spec['job']}")
        lines.append(
            f"  dataset  {spec['dataset']} / {spec['category']}: {folder} ({'found' if found else 'MISSING'})"
        )
        lines.append(f"  model    {spec['model']} {spec['method']!r}, weights {weights}")
        extra = {key: spec[key] for key in ("variants", "sweep", "finetune") if spec.get(key)}
        lines.append(f"  args     {spec['init_args']} {extra or ''}".rstrip())
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
