"""Train, test and export LDKNN on data reachable without a network, then draw one panel per image.

Run ``python -m anomalib_pdae.demo`` (the README's first command wraps it). Data: the folder
given by ``--data`` (an MVTec-layout category), else ``../shared/data/kolektorsdd`` beside the
repository when present, else a small generated dataset. Weights: ``--weights``, else timm's
pretrained ones (local hub cache, or the hub after one short check), else a local
``mobilenetv2_100`` safetensors file, else random initialisation — always said. ``-v`` shows
every third-party message.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from anomalib_pdae import quiet

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BACKBONE, LAYERS = "mobilenetv2_100", ["blocks.2", "blocks.4"]
EXPORT_SCORED = 3  # test images scored again by the OpenVINO export


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="an MVTec-layout category folder (train/good, test/...)")
    parser.add_argument("--weights", type=Path, help="local mobilenetv2_100 weights (safetensors)")
    parser.add_argument("--output", type=Path, default=Path("demo_output"), help="where results go")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--coreset-ratio", type=float, default=0.1)
    parser.add_argument("--readme-panel", type=Path, help="also save a small PNG of the first defect's panel")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every third-party message")
    args = parser.parse_args(argv)
    if args.verbose:
        os.environ[quiet.VERBOSE_ENV] = "1"
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    else:
        ours = logging.getLogger("anomalib_pdae")
        ours.setLevel(logging.INFO)
        if not ours.handlers:
            ours.addHandler(logging.StreamHandler(sys.stdout))
        ours.propagate = False
    quiet.install()
    from anomalib_pdae.models.components import WeightsError

    try:
        run(args.data, args.weights, args.output, args.image_size, args.coreset_ratio, args.readme_panel)
    except WeightsError as error:  # a bad --weights file: one line, nothing written
        raise SystemExit(f"error: {error}") from None


def run(
    data: Path | None,
    weights: Path | None,
    output: Path,
    image_size: int,
    coreset_ratio: float,
    readme_panel: Path | None = None,
) -> dict:
    """Train and test Ldknn (panels of every test image), export it to OpenVINO, score with the export."""
    from anomalib.data import MVTecAD
    from anomalib.deploy import ExportType
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    from anomalib_pdae import Ldknn
    from anomalib_pdae.panels import PanelVisualizer

    if data is not None and not (data / "train" / "good").is_dir():
        msg = f"{data} is not an MVTec-layout category folder: {data / 'train' / 'good'} is missing."
        raise SystemExit(msg)
    panels = output / "panels"
    model = Ldknn(
        backbone=BACKBONE,
        layers=LAYERS,
        coreset_ratio=coreset_ratio,
        pre_processor=Ldknn.configure_pre_processor(image_size=(image_size, image_size)),
        visualizer=PanelVisualizer(output_dir=panels),
        **_weights(weights),
    )
    output.mkdir(parents=True, exist_ok=True)
    category = _dataset(data, output)
    datamodule = MVTecAD(root=category.parent, category=category.name, num_workers=0, seed=0)
    seed_everything(0, verbose=False)  # the training order decides the coreset's start: repeatable runs
    engine = Engine(default_root_dir=output / "runs", logger=False, enable_model_summary=False)
    engine.fit(model, datamodule=datamodule)
    (metrics,) = engine.test(model, datamodule=datamodule)
    written = sorted(panels.rglob("*.png"))
    print(f"panels (image | ground truth | heat map | predicted mask), {len(written)} test images: {panels}")
    if readme_panel is not None:
        _small_copy(next(p for p in written if p.parent.name != "good"), readme_panel)
    exported = engine.export(model, ExportType.OPENVINO, export_root=output / "export")
    print(f"OpenVINO model: {exported}")
    _score_with_export(exported, category)
    return metrics


def _dataset(data: Path | None, output: Path) -> Path:
    from anomalib_pdae.data.synthetic import make_synthetic_dataset

    if data is not None:
        print(f"data: {data}")
        return data
    shared = SHARED / "data" / "kolektorsdd"
    if (shared / "train" / "good").is_dir():
        print(f"data: KolektorSDD ({shared})")
        return shared
    print("data: no dataset found beside the repository; generating a small synthetic one")
    return make_synthetic_dataset(output / "data", n_train=48, n_test_good=12, n_test_defect=12)


def _weights(weights: Path | None) -> dict:
    """Model arguments for the best weights reachable; the model logs the one line naming them."""
    from anomalib_pdae.models.components import WeightsError
    from anomalib_pdae.models.components.weights import pretrained_file

    if weights is not None:
        return {"weights": weights}
    try:
        pretrained_file(BACKBONE)
    except WeightsError:  # no hub and no cache: offline factory PCs
        local = SHARED / "weights" / f"{BACKBONE}.tv_in1k.safetensors"
        if local.is_file():
            print("model hub not reachable: using the local ImageNet weights")
            return {"weights": local}
        print("weights: NONE REACHABLE — falling back to random initialisation; expect poor AUROC")
        return {"pre_trained": False}
    return {"pre_trained": True}


def _small_copy(panel: Path, target: Path) -> None:
    """A palette PNG of ``panel`` (a fraction of the size) for the README."""
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    Image.open(panel).convert("RGB").quantize(colors=128).save(target, optimize=True)
    print(f"README panel: {target} ({target.stat().st_size // 1024} KB)")


def _score_with_export(model_path: Path, category: Path) -> None:
    from anomalib.deploy import OpenVINOInferencer

    from anomalib_pdae.deploy import EXACT_CPU_CONFIG

    inferencer = OpenVINOInferencer(path=model_path, device="CPU", config=EXACT_CPU_CONFIG)
    defects = sorted(p for p in (category / "test").iterdir() if p.is_dir() and p.name != "good")
    images = [sorted(d.iterdir())[0] for d in defects] + sorted((category / "test" / "good").iterdir())
    for path in images[:EXPORT_SCORED]:
        prediction = inferencer.predict(path)
        score = float(prediction.pred_score.squeeze())
        print(f"  scored by the export: {path.parent.name}/{path.name} {score:.3f}")


if __name__ == "__main__":
    main()
