"""Before a job's fit: the fine-tuned backbone (``spec["finetune"]``) and K chosen without test labels.

See README.md, "REB rows: DefectMaker, REB and variable K".
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from lightning.pytorch import Callback, seed_everything

from .build import quiet_engine, sha256
from .settings import VARIABLE_K, fixed_k
from .timing import timed


class StopAfterFinetuning(Callback):
    """Stops ``Reb``'s fit once its updates are done (its memory bank is not needed)."""

    def on_train_batch_end(self, trainer, pl_module, *args, **kwargs) -> None:
        """Stop when the model says its fine-tuning is over."""
        if pl_module.finetuned:
            trainer.should_stop = True


def _record(spec: dict) -> dict:
    """What determines the fine-tuned weights; a stored file is reused only if this matches."""
    weights = spec.get("weights")
    return {
        **{key: spec[key] for key in ("dataset", "category")},
        "backbone": spec["init_args"]["backbone"],
        "source_weights": Path(weights).name if weights else "timm pretrained",
        "source_sha256": sha256(weights) if weights else None,
        **{key: spec.get(key) for key in ("image_size", "n_train", "seed", "finetune")},
    }


def finetuned_backbone(spec: dict, datamodule) -> tuple[Path, dict]:
    """The fine-tuned backbone of the spec's category, in ``<results>/finetuned/``: reused or trained."""
    from anomalib_pdae.models.reb import Reb

    defects = spec["finetune"].get("defects", "defectmaker")
    suffix = "" if defects == "defectmaker" else f".{defects}"
    folder = spec.get("finetuned_dir") or Path(spec["log"]).resolve().parents[1] / "finetuned"
    name = f"{spec['dataset']}.{spec['category']}.{spec['backbone']}.seed{spec['seed']}{suffix}.safetensors"
    path, record = Path(folder) / name, _record(spec)
    info_path = path.with_suffix(".json")
    if path.is_file() and info_path.is_file():
        stored = json.loads(info_path.read_text())
        if stored.get("record") == record:
            return path, {**stored, "reused": True}
    settings, weights = dict(spec["finetune"]), spec.get("weights")
    batch_size, size = settings.pop("batch_size"), settings.pop("image_size", spec["image_size"])
    model = Reb(
        **{key: spec["init_args"][key] for key in ("backbone", "layers")},
        pre_trained=weights is None,
        weights=weights,
        seed=spec["seed"],
        backbone_path=path,
        pre_processor=Reb.configure_pre_processor((size, size)),
        **{"post_processor": False, "evaluator": False, "visualizer": False},
        **settings,
    )
    previous, datamodule.train_batch_size = datamodule.train_batch_size, batch_size
    with tempfile.TemporaryDirectory() as root:
        # max_epochs=-1: the fine-tuning's own update count ends the run
        engine = quiet_engine(root, spec["accelerator"], [StopAfterFinetuning()], max_epochs=-1)
        seconds = timed(engine.fit, model, datamodule=datamodule)[1]
        logged = engine.trainer.callback_metrics
        metrics = {name: float(logged[name]) for name in ("ssl_loss", "ssl_accuracy") if name in logged}
    datamodule.train_batch_size = previous
    if not model.finetuned or not path.is_file():
        msg = f"fine-tuning stopped after {int(model.updates)} of {model.num_updates} updates"
        raise RuntimeError(msg)
    stored = {"record": record, "updates": int(model.updates), "seconds": seconds, "last_batch": metrics}
    stored["weights_file"] = path.name
    info_path.write_text(json.dumps(stored, indent=2) + "\n")
    return path, {**stored, "reused": False}


def prepare(spec: dict, datamodule, build_model: Callable[[dict], object]) -> tuple[dict, dict]:
    """Fine-tune and/or choose K as the spec asks; return the spec to fit and the log's extra entries.

    The entries: ``rows`` (chosen K as ``metric = "k"`` rows), ``finetune`` and ``variable_k``.
    """
    from .variable_k import K_CANDIDATES, choose_k

    extra: dict = {"rows": []}
    variable = [v["method"] for v in spec.get("variants") or [] if v.get("k") == VARIABLE_K]
    if spec["init_args"].get("k") == VARIABLE_K and not spec.get("variants"):
        variable.append(spec["method"])
    if not spec.get("finetune") and not variable:
        return spec, extra
    if not hasattr(datamodule, "train_data"):
        datamodule.setup()
    if spec.get("finetune"):
        path, extra["finetune"] = finetuned_backbone(spec, datamodule)
        spec = {**spec, "weights": str(path)}
        seed_everything(spec["seed"], workers=True)
    if variable:
        default = fixed_k(spec["dataset"], spec["backbone"])
        model = build_model({**spec, "init_args": {**spec["init_args"], "k": default}})
        # The GPU when the job may use one, as its Engine would.
        gpu = spec["accelerator"] in ("auto", "gpu", "cuda") and torch.cuda.is_available()
        model.model.to("cuda" if gpu else "cpu")
        inputs = (
            model.model,
            datamodule.train_data,
            model.pre_processor.transform,
            K_CANDIDATES[spec["dataset"]],
        )
        selection = choose_k(*inputs, default, seed=spec["seed"], batch_size=spec["batch_size"])
        extra["variable_k"], k = selection, selection["k"]
        init_args = {**spec["init_args"], **({"k": k} if spec["init_args"].get("k") == VARIABLE_K else {})}
        variants = [{**v, "k": k} if v.get("k") == VARIABLE_K else v for v in spec.get("variants") or []]
        spec = {**spec, "init_args": init_args, **({"variants": variants} if variants else {})}
        extra["rows"] = [{"method": m, "parameter": "", "metric": "k", "value": float(k)} for m in variable]
        seed_everything(spec["seed"], workers=True)
    return spec, extra
