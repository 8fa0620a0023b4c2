"""A bad ``weights`` file on anomalib's CLI: one line and exit status 2, not a traceback.

anomalib's CLI builds the model inside jsonargparse, which folds the constructor's exception into
"Does not validate against any of the Union subtypes" (keeping only its text, not the exception)
and lets rich print the whole traceback. :func:`report_weights_errors` gives every parser of
anomalib's CLI an instantiator (jsonargparse's ``add_instantiator``) that reports a
:class:`WeightsError` as jsonargparse reports a bad argument: ``error: <message>`` on stderr, exit
status 2. The model is built before the engine creates any folder, so nothing is written. Python
code is not affected: ``Ldknn(weights=...)`` and ``Engine`` still raise :class:`WeightsError`.
"""

from __future__ import annotations

from typing import Any

from anomalib.models import AnomalibModule
from jsonargparse import ArgumentParser

from anomalib_pdae.models.components.weights import WeightsError

_MARK = "reports_weights_errors"


def report_weights_errors(cli_class: type) -> None:
    """Make the parsers that ``cli_class.init_parser`` creates report a :class:`WeightsError` in one line.

    The start-up hook calls it on ``AnomalibCLI`` when anomalib's CLI module is imported; a second
    call changes nothing.

    Example:
        >>> from anomalib.cli import AnomalibCLI
        >>> report_weights_errors(AnomalibCLI)
        >>> AnomalibCLI(["train", "--model", "Ldknn", "--model.weights", "missing.pt"], run=False)
        Traceback (most recent call last):
        SystemExit: 2
    """
    make_parser = cli_class.init_parser
    if getattr(make_parser, _MARK, False):
        return

    def init_parser(**kwargs: Any) -> ArgumentParser:
        parser = make_parser(**kwargs)

        def instantiate(class_type: type, *args: Any, **init_args: Any) -> Any:
            try:
                return class_type(*args, **init_args)
            except WeightsError as error:
                parser.exit(2, f"error: {' '.join(str(error).split())}\n")

        parser.add_instantiator(instantiate, AnomalibModule)
        return parser

    setattr(init_parser, _MARK, True)
    cli_class.init_parser = staticmethod(init_parser)
