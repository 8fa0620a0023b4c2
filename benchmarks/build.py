"""What a job spec builds: the datamodule, the model, the Engine, and the weights record."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path


def build_datamodule(spec: dict):
    """Anomalib's datamodule of the spec; ``n_train`` / ``n_test`` (half anomalous): seeded subsets."""
    from anomalib import data

    base = getattr(data, spec["datamodule"])
    n_train, n_test, seed = spec.get("n_train"), spec.get("n_test"), spec["seed"]

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
    sizes = {"train_batch_size": spec["batch_size"], "eval_batch_size": spec["batch_size"]}
    return Limited(root=spec["root"], category=spec["category"], num_workers=spec["num_workers"], **sizes)


def load_weights(module, weights: str | Path) -> None:
    """Load a timm checkpoint into a features-only timm model; every parameter must be covered."""
    from safetensors.torch import load_file

    missing = module.load_state_dict(load_file(weights), strict=False).missing_keys
    if missing:
        msg = f"weights {weights} miss {len(missing)} parameters of the model, e.g. {missing[:3]}"
        raise ValueError(msg)


def build_model(spec: dict):
    """The model with raw scores: no post-processing, no evaluator (see :mod:`benchmarks.metrics`)."""
    import anomalib_pdae

    init_args, size, weights = dict(spec["init_args"]), (spec["image_size"],) * 2, spec.get("weights")
    common = {"post_processor": False, "evaluator": False, "visualizer": False}
    if spec["model"] == "Patchcore":
        from anomalib.models import Patchcore

        crop = spec.get("center_crop")
        pre_processor = Patchcore.configure_pre_processor(size, (crop, crop) if crop else None)
        model = Patchcore(**init_args, pre_trained=weights is None, pre_processor=pre_processor, **common)
        if weights is not None:
            load_weights(model.model.feature_extractor.feature_extractor, weights)
        return model
    model_class = getattr(anomalib_pdae, spec["model"])  # Ldknn, Pdae or Gde
    if spec["model"] == "Pdae":
        weights = [weights] if weights else None
    if spec["model"] == "Gde":  # its ``layers`` only tell a fine-tuning (reb_rows) the LDKNN layers
        init_args.pop("layers", None)
    return model_class(
        **init_args, weights=weights, pre_processor=model_class.configure_pre_processor(size), **common
    )


def quiet_engine(root: str, accelerator: str, callbacks: list, max_epochs: int | None = None):
    """The Engine every job fits with: no logger, no progress bar, no validation epoch."""
    from anomalib.engine import Engine

    quiet = {"logger": False, "enable_progress_bar": False, "limit_val_batches": 0, "devices": 1}
    return Engine(
        default_root_dir=root, accelerator=accelerator, callbacks=callbacks, max_epochs=max_epochs, **quiet
    )


def sha256(path: str | Path) -> str:
    """SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_tags(spec: dict) -> list[str]:
    """The timm ``name.tag`` of every network a spec builds (Pdae: each of its backbones).

    Without a weights file an untagged name is resolved to the tag timm downloads for it, e.g.
    ``resnet18`` → ``resnet18.a1_in1k``; with one, the file (and its SHA-256) says which weights.
    """
    import timm

    names = [entry[0] for entry in spec["init_args"]["backbones"]] if spec["model"] == "Pdae" else []
    tags = []
    for name in names or [spec["init_args"]["backbone"]]:
        config = None if "." in name or spec.get("weights") else timm.models.get_pretrained_cfg(name)
        tags.append(f"{name}.{config.tag}" if config is not None and config.tag else name)
    return tags


def weights_record(spec: dict) -> dict[str, str]:
    """Which weights produced a job's rows: timm tag(s), and the local file and its SHA-256."""
    weights = spec.get("weights")
    record = {"weights": "+".join(weights_tags(spec)), "weights_file": "", "weights_sha256": ""}
    if weights:
        record |= {"weights_file": Path(weights).name, "weights_sha256": sha256(weights)}
    return record
