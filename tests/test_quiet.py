"""The message filters hide exactly the known-harmless messages, and nothing in verbose mode."""

from __future__ import annotations

import logging
import warnings

import pytest

from anomalib_pdae import quiet

EVAL_MODE = "Found 282 module(s) in eval mode at the start of training."


def _shown(message: str, module: str) -> bool:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet.install()
        warnings.warn_explicit(message, UserWarning, f"{module.replace('.', '/')}.py", 1, module=module)
    return bool(caught)


def test_known_warning_hidden_only_from_its_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    assert not _shown(EVAL_MODE, "lightning.pytorch.loops.fit_loop")
    assert _shown(EVAL_MODE, "my_project.training")  # same words elsewhere: shown
    assert _shown("Something else went wrong.", "lightning.pytorch.loops.fit_loop")


def test_verbose_shows_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(quiet.VERBOSE_ENV, "1")
    assert _shown(EVAL_MODE, "lightning.pytorch.loops.fit_loop")


def test_known_log_line_hidden_only_on_its_logger(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    quiet.install()
    logger = logging.getLogger("onnx_ir.passes.common.initializer_deduplication")
    with caplog.at_level(logging.INFO):
        logger.info("Replaced initializer '%s' with existing initializer '%s'", "a", "b")
        logger.info("Something the user needs")
        logging.getLogger("elsewhere").info("Replaced initializer 'a' with existing initializer 'b'")
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("onnx_ir.passes.common.initializer_deduplication", "Something the user needs"),
        ("elsewhere", "Replaced initializer 'a' with existing initializer 'b'"),
    ]
