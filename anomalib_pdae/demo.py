"""Train, test and export LDKNN on data reachable without a network, then draw heat maps.

Run ``python -m anomalib_pdae.demo`` (the README's first command wraps it). Data: the folder
given by ``--data`` (an MVTec-layout category), else ``../shared/data/kolektorsdd`` beside the
repository when present, else a small generated dataset. Weights: timm's hub when it answers,
else a local ``mobilenetv2_100`` safetensors file, else random initialisation — always said.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BACKBONE, LAYERS = "mobilenetv2_100", ["blocks.2", "blocks.4"]

logger = logging.getLogger("anomalib_pdae.demo")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="an MVTec-layout category folder (train/good, test/...)")
    parser.add_argument("--weights", type=Path, help="local mobilenetv2_100 weights (safetensors)")
    parser.add_argument("--output", type=Path, default=Path("demo_output"), help="where results go")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--coreset-ratio", type=float, default=0.1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run(args.data, args.weights, args.output, args.image_size, args.coreset_ratio)


def run(data: Path | None, weights: Path | None, output: Path, image_size: int, coreset_ratio: float) -> dict:
    """Train and test Ldknn, export it to OpenVINO, score test images with the export, draw maps."""
    from anomalib.data import MVTecAD
    from anomalib.deploy import ExportType
    from anomalib.engine import Engine

    from anomalib_pdae import Ldknn

    output.mkdir(parents=True, exist_ok=True)
    category = _dataset(data, output)
    model = Ldknn(
        backbone=BACKBONE,
        layers=LAYERS,
        coreset_ratio=coreset_ratio,
        pre_processor=Ldknn.configure_pre_processor(image_size=(image_size, image_size)),
        visualizer=False,
        **_weights(weights),
    )
    datamodule = MVTecAD(root=category.parent, category=category.name, num_workers=0, seed=0)
    engine = Engine(default_root_dir=output / "runs", logger=False)
    engine.fit(model, datamodule=datamodule)
    (metrics,) = engine.test(model, datamodule=datamodule, verbose=False)
    print(f"\nimage AUROC {metrics['image_AUROC']:.3f}   pixel AUROC {metrics['pixel_AUROC']:.3f}")

    exported = engine.export(model, ExportType.OPENVINO, export_root=output / "export")
    print(f"OpenVINO model: {exported}")
    pictures = _heat_maps(exported, category, output / "heatmaps")
    print(f"heat maps of {len(pictures)} test images (scored by the exported model): {output / 'heatmaps'}")
    return metrics


def _dataset(data: Path | None, output: Path) -> Path:
    from anomalib_pdae.data.synthetic import make_synthetic_dataset

    if data is not None:
        if not (data / "train" / "good").is_dir():
            msg = f"{data} is not an MVTec-layout category folder: {data / 'train' / 'good'} is missing."
            raise SystemExit(msg)
        return data
    shared = SHARED / "data" / "kolektorsdd"
    if (shared / "train" / "good").is_dir():
        print(f"data: KolektorSDD ({shared})")
        return shared
    print("data: no dataset found beside the repository; generating a small synthetic one")
    return make_synthetic_dataset(output / "data", n_train=48, n_test_good=12, n_test_defect=12)


def _weights(weights: Path | None) -> dict:
    """Real ImageNet weights when any can be reached; random initialisation said out loud."""
    import timm

    if weights is not None:
        print(f"weights: {weights}")
        return {"weights": weights}
    try:
        timm.create_model(BACKBONE, pretrained=True)
    except Exception as error:  # no hub: offline factory PCs and these machines
        logger.debug("hub weights unavailable: %s", error)
    else:
        print("weights: timm pretrained (hub)")
        return {"pre_trained": True}
    local = SHARED / "weights" / f"{BACKBONE}.tv_in1k.safetensors"
    if local.is_file():
        print(f"weights: {local}")
        return {"weights": local}
    print("weights: NONE REACHABLE — falling back to random initialisation; expect poor AUROC")
    return {"pre_trained": False}


def _heat_maps(model_path: Path, category: Path, folder: Path, count: int = 4) -> list[Path]:
    from anomalib.deploy import OpenVINOInferencer
    from anomalib.visualization.image.functional import overlay_images, visualize_anomaly_map
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    inferencer = OpenVINOInferencer(path=model_path, device="CPU")
    defects = sorted(p for p in (category / "test").iterdir() if p.is_dir() and p.name != "good")
    images = [sorted(d.iterdir())[0] for d in defects][:count] + sorted(
        (category / "test" / "good").iterdir()
    )[:1]
    written = []
    for path in images:
        prediction = inferencer.predict(path)
        original = Image.open(path).convert("RGB")
        heat = visualize_anomaly_map(prediction.anomaly_map.squeeze(), normalize=True).resize(original.size)
        target = folder / f"{path.parent.name}_{path.stem}.png"
        overlay_images(original, heat, alpha=0.5).save(target)
        print(f"  {path.parent.name}/{path.name}: score {float(prediction.pred_score.squeeze()):.3f}")
        written.append(target)
    return written


if __name__ == "__main__":
    main()
