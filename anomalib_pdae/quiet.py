"""Hide the third-party messages that are known to be harmless for these models; verbose on request.

Each rule names the message and the module (or logger) that emits it, so nothing else is hidden.
The rules are installed when one of this package's models is built (:class:`PluginDefaultsMixin`) or
the demo starts, never on import, so other anomalib models print what they always printed. Set
``ANOMALIB_PDAE_VERBOSE=1`` (the demo: ``-v``) to see everything.

Example:
    >>> from anomalib_pdae import quiet
    >>> quiet.install()  # no-op when ANOMALIB_PDAE_VERBOSE=1
"""

from __future__ import annotations

import logging
import os
import re
import warnings

VERBOSE_ENV = "ANOMALIB_PDAE_VERBOSE"

# (message regex, module regex) of warnings that ask nothing of a user of these models.
WARNINGS = (
    # Frozen backbones stay in eval mode on purpose.
    (r"Found \d+ module\(s\) in eval mode", r"lightning\.pytorch\.loops\.fit_loop"),
    # Memory-bank models fit without gradient descent.
    (r"`LightningModule\.configure_optimizers` returned `None`", r"lightning\.pytorch\.core\.optimizer"),
    # Deprecations inside Lightning, timm and another anomalib model: nothing to change here.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"lightning\.pytorch\.utilities\._pytree"),
    (r"Importing from timm\.models\.layers is deprecated", r"timm\.models\.layers"),
    (r"The anomalib\.models\.components\.dinov2 package", r"anomalib\.models\.image\.dinomaly"),
)
LIGHTNING_INFO = (
    r"(GPU|TPU|HPU) available",
    r"💡 Tip:",
    r"The following callbacks returned in `LightningModule\.configure_callbacks` will override",
)
# Lightning's info logger is named after whichever of its packages was imported last.
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning_fabric", "pytorch_lightning")
# logger name -> message regexes: information no one acts on, or said better by our own line.
LOG_LINES = {
    **{f"{package}.utilities.rank_zero": LIGHTNING_INFO for package in LIGHTNING_LOGGERS},
    "timm.models._builder": (r"Loading pretrained weights from", r"Unexpected keys .* found while loading"),
    "timm.models._helpers": (r"Loaded .*from checkpoint",),
    "faiss.loader": (r"Loading faiss", r"Could not load library with AVX2", r"Successfully loaded faiss"),
    "onnx_ir.passes.common.initializer_deduplication": (r"Replaced initializer",),
}


def verbose() -> bool:
    """Whether the user asked to see every message (``ANOMALIB_PDAE_VERBOSE=1``)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


class _DropMessages(logging.Filter):
    def __init__(self, patterns: tuple[str, ...]) -> None:
        super().__init__()
        self.pattern = re.compile("|".join(f"(?:{p})" for p in patterns))

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def install() -> None:
    """Add the narrow warning and log filters (once); does nothing in verbose mode."""
    if verbose():
        return
    for message, module in WARNINGS:
        warnings.filterwarnings("ignore", message=message, module=module)  # deduplicated by `warnings`
    for name, patterns in LOG_LINES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(patterns))
