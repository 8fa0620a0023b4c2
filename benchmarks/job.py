"""One benchmark run in its own process: fit a model on one category, test it, write a JSON log.

The runner starts ``python -m benchmarks.job SPEC.json`` once per (category, model) so that every
run has fresh memory, its own allocator settings and its own seed. The spec names the datamodule,
the model and its init args; the log (written to ``spec["log"]``) holds the spec, the metrics,
the timings and the rows to add to the table's CSV.

A spec may list ``variants`` (scorer, K) of Ldknn: the memory bank is fitted once and each variant
re-scores the same test images on that bank (REB Table 6, Fig. 5). A ``sweep`` lists init-arg
overrides (e.g. coreset ratios, REB Fig. 4): one fresh model is fitted per item, in this process.
"""

from __future__ import annotations

import json
import math
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DATAMODULES = ("MVTecAD", "MVTecLOCO", "BTech")
MODELS = ("Ldknn", "Patchcore", "Pdae", "Gde")


def _limited_datamodule(name: str, n_train: int | None, n_test: int | None, seed: int, **kwargs: Any):
    """Build anomalib's datamodule ``name``, optionally on seeded random subsets.

    ``n_train`` normal training images; ``n_test`` test images, half normal and half anomalous.
    """
    from anomalib import data

    base = getattr(data, name)

    class Limited(base):
        def _setup(self, _stage: str | None = None) -> None:
            super()._setup(_stage)
            if n_train is not None and len(self.train_data) > n_train:
                keep = sorted(random.Random(seed).sample(range(len(self.train_data)), n_train))
                self.train_data = self.train_data.subsample(keep)
            if n_test is not None and len(self.test_data) > n_test:
                labels = self.test_data.samples["label_index"].to_numpy()
                rng = random.Random(seed)
                keep = []
                for label, count in ((0, n_test // 2), (1, n_test - n_test // 2)):
                    members = [int(i) for i in (labels == label).nonzero()[0]]
                    keep += rng.sample(members, min(count, len(members)))
                self.test_data = self.test_data.subsample(sorted(keep))

    Limited.__name__ = base.__name__
    return Limited(**kwargs)


def _load_weights(module, weights: str) -> None:
    """Load a timm checkpoint into a features-only timm model; every parameter must be covered."""
    from safetensors.torch import load_file

    result = module.load_state_dict(load_file(weights), strict=False)
    if result.missing_keys:
        missing = result.missing_keys
        msg = f"weights {weights} miss {len(missing)} parameters of the model, e.g. {missing[:3]}"
        raise ValueError(msg)


def _model(spec: dict):
    """The model with raw scores: no post-processing, no evaluator (see :mod:`benchmarks.metrics`)."""
    init_args = dict(spec["init_args"])
    size = (spec["image_size"], spec["image_size"])
    common = {"post_processor": False, "evaluator": False, "visualizer": False}
    if spec["model"] == "Ldknn":
        from anomalib_pdae import Ldknn

        return Ldknn(
            **init_args,
            weights=spec.get("weights"),
            pre_processor=Ldknn.configure_pre_processor(size),
            **common,
        )
    if spec["model"] == "Pdae":
        from anomalib_pdae import Pdae

        weights = [spec["weights"]] if spec.get("weights") else None
        return Pdae(**init_args, weights=weights, pre_processor=Pdae.configure_pre_processor(size), **common)
    if spec["model"] == "Gde":
        from .gde import Gde

        # ``layers`` only tells a DefectMaker fine-tuning (benchmarks.reb_rows) its LDKNN layers.
        init_args.pop("layers", None)
        pre_processor = Gde.configure_pre_processor(size)
        return Gde(**init_args, weights=spec.get("weights"), pre_processor=pre_processor, **common)
    from anomalib.models import Patchcore

    weights = spec.get("weights")
    crop = spec.get("center_crop")
    model = Patchcore(
        **init_args,
        pre_trained=weights is None,
        pre_processor=Patchcore.configure_pre_processor(size, (crop, crop) if crop else None),
        **common,
    )
    if weights is not None:
        _load_weights(model.model.feature_extractor.feature_extractor, weights)
    return model


def _rescore(model, scorer: str, k: int) -> None:
    """Point a fitted Ldknn at another scorer / K, recomputing its tables on the same bank."""
    from anomalib_pdae.models.ldknn import scorers
    from anomalib_pdae.models.ldknn.torch_model import BANK_BUFFERS

    torch_model = model.model
    bank = torch_model.memory_bank
    tables = scorers.fit_statistics(scorer, bank, bank, k, torch_model.distance, progress=False)
    torch_model.scorer = scorer
    torch_model.k = k
    for name in BANK_BUFFERS[1:]:
        setattr(torch_model, name, tables.get(name, bank.new_empty(0)).to(bank.device))


def quiet_engine(root: str, accelerator: str, callbacks: list, max_epochs: int | None = None):
    """The Engine every job fits with: no logger, no progress bar, no validation epoch.

    ``max_epochs`` bounds trainable models (``-1``: until the model stops itself, as Reb does
    after its fine-tuning updates and bank pass); ``None`` leaves Lightning's default.
    """
    from anomalib.engine import Engine

    return Engine(
        default_root_dir=root,
        logger=False,
        accelerator=accelerator,
        devices=1,
        enable_progress_bar=False,
        limit_val_batches=0,
        callbacks=callbacks,
        max_epochs=max_epochs,
    )


def run(spec: dict) -> dict:
    """Fit and test as the spec says; return the log (also written to ``spec['log']``)."""
    import torch
    from lightning.pytorch import seed_everything

    from .details import DetailCollector
    from .reb_rows import prepare

    seed_everything(spec["seed"], workers=True)
    datamodule = _limited_datamodule(
        spec["datamodule"],
        spec.get("n_train"),
        spec.get("n_test"),
        spec["seed"],
        root=spec["root"],
        category=spec["category"],
        train_batch_size=spec["batch_size"],
        eval_batch_size=spec["batch_size"],
        num_workers=spec["num_workers"],
    )
    spec, extra = prepare(spec, datamodule, _model)
    rows, runs = extra.pop("rows"), []
    collector = DetailCollector(spec.get("anomaly_types"), pro=spec.get("pro", False))
    fit_seconds = []
    for item in spec.get("sweep") or [{}]:
        model = _model({**spec, "init_args": {**spec["init_args"], **item.get("init_args", {})}})
        variants = spec.get("variants") or [{"method": item.get("method", spec["method"])}]
        with tempfile.TemporaryDirectory() as root:
            engine = quiet_engine(root, spec["accelerator"], [collector], spec.get("max_epochs"))
            started = time.perf_counter()
            engine.fit(model, datamodule=datamodule)
            fit_seconds.append(time.perf_counter() - started)
            for variant in variants:
                if "scorer" in variant:
                    _rescore(model, variant["scorer"], variant["k"])
                started = time.perf_counter()
                collector.reset()
                engine.test(model, datamodule=datamodule, verbose=False)
                test_seconds = time.perf_counter() - started
                metrics = collector.metrics()
                if spec.get("report_speed"):
                    metrics["images_per_second"] = len(datamodule.test_data) / test_seconds
                parameter = variant.get("parameter", item.get("parameter", ""))
                details = collector.details()
                runs.append({**item, **variant, **metrics, "test_seconds": test_seconds, **details})
                rows += [
                    {"method": variant["method"], "parameter": parameter, "metric": metric, "value": value}
                    for metric, value in metrics.items()
                ]
    # Paths by name only: the logs are committed and must not depend on this machine.
    paths = {key: Path(spec[key]).name for key in ("root", "weights", "log") if spec.get(key)}
    log = {
        "spec": {**spec, **paths},
        "n_train": len(datamodule.train_data),
        "n_test": len(datamodule.test_data),
        "fit_seconds": fit_seconds,
        "runs": runs,
        "rows": rows,
        "finite": all(math.isfinite(row["value"]) for row in rows),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "machine": platform.machine(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }
    Path(spec["log"]).write_text(json.dumps(log, indent=2) + "\n")
    return log


if __name__ == "__main__":
    run(json.loads(Path(sys.argv[1]).read_text()))
