"""anomalib's model integration workflow, for each of this package's models.

What anomalib's ``tests/integration/model/test_models.py`` does for its own models: default
constructor arguments through ``get_model`` (Pdae's lighter, see ``EXTRA_ARGS``),
``Engine(max_epochs=1, devices=1)``, a generated
MVTec-layout dataset of 5 training images, then fit, and test, train, validate, predict and
export to torch / ONNX / OpenVINO from the fit's checkpoint. The ``pre_trained=True`` defaults
load random-initialised weights from a temporary local model-hub cache (offline), so the weights
path a user's first run takes is exercised; the numbers are not ImageNet's, so no metric is
asserted here (see the per-model tests for those).
"""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest
from anomalib.data import MVTecAD
from anomalib.deploy import ExportType
from anomalib.engine import Engine
from anomalib.models import AnomalibModule, get_model

from anomalib_pdae.data.synthetic import make_synthetic_dataset
from tests.hub_cache import add_random_weights, hub_ids

pytestmark = pytest.mark.slow

MODELS = ("Ldknn", "Pdae", "Reb", "Ulsad")
# As anomalib's suite passes lighter arguments to its heaviest models "to keep integration tests
# lightweight": Pdae's default DenseNet-201 + CaiT-XXS24 at 384 px costs about ten CPU-minutes
# for this workflow on 2 cores, so here it runs on one CNN at 256 px. Its default networks are
# offline loading is tested in tests/test_weights.py and the scoring in test_golden_pdae.py.
EXTRA_ARGS = {"Pdae": {"backbones": [("resnet18.tv_in1k", ["layer1", "layer2"])], "image_size": (256, 256)}}


@pytest.fixture(scope="module")
def project_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("integration")


@pytest.fixture(scope="module")
def dataset_path(project_path: Path) -> Path:
    """anomalib's dummy MVTec AD: 5 training images, a few normal and defective test images."""
    root = project_path / "datasets"
    make_synthetic_dataset(root, category="dummy", n_train=5, n_test_good=3, n_test_defect=3, image_size=256)
    return root


@pytest.fixture(scope="module", autouse=True)
def offline_hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hub cache holding every default backbone, read offline (``HF_HUB_OFFLINE=1``)."""
    hub = tmp_path_factory.mktemp("hf_home") / "hub"
    for name in MODELS:
        for hub_id in hub_ids(get_model(name, pre_trained=False, **EXTRA_ARGS.get(name, {}))):
            add_random_weights(hub, hub_id)
    with pytest.MonkeyPatch.context() as patch:
        # the hub client read its environment when imported: set its constants directly
        patch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        patch.setenv("HF_HOME", str(hub.parent))
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield hub


def _objects(
    model_name: str, dataset_path: Path, project_path: Path
) -> tuple[AnomalibModule, MVTecAD, Engine]:
    """As anomalib's ``_get_objects``: default model, dummy MVTecAD (batch 2), one-epoch Engine."""
    model = get_model(model_name, **EXTRA_ARGS.get(model_name, {}))
    datamodule = MVTecAD(root=dataset_path, category="dummy", train_batch_size=2, num_workers=0)
    engine = Engine(logger=False, default_root_dir=project_path, max_epochs=1, devices=1)
    return model, datamodule, engine


def _checkpoint(project_path: Path, model: AnomalibModule, datamodule: MVTecAD) -> Path:
    run = project_path / model.name / datamodule.name / "dummy" / "v0"
    return run / "weights" / "lightning" / "model.ckpt"


@pytest.mark.parametrize("model_name", MODELS)
def test_fit(model_name: str, dataset_path: Path, project_path: Path) -> None:
    model, datamodule, engine = _objects(model_name, dataset_path, project_path)
    engine.fit(model=model, datamodule=datamodule)
    assert engine.trainer.current_epoch == 1  # Engine(max_epochs=1) bounded the run
    assert _checkpoint(project_path, model, datamodule).is_file()


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("step", ["test", "train", "validate", "predict"])
def test_from_checkpoint(step: str, model_name: str, dataset_path: Path, project_path: Path) -> None:
    model, datamodule, engine = _objects(model_name, dataset_path, project_path)
    result = getattr(engine, step)(
        model=model, datamodule=datamodule, ckpt_path=_checkpoint(project_path, model, datamodule)
    )
    assert result  # metrics (test, train, validate) or prediction batches


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("export_type", list(ExportType))
def test_export(export_type: ExportType, model_name: str, dataset_path: Path, project_path: Path) -> None:
    model, datamodule, engine = _objects(model_name, dataset_path, project_path)
    path = engine.export(
        model=model, export_type=export_type, ckpt_path=_checkpoint(project_path, model, datamodule)
    )
    assert path is not None and Path(path).is_file()
