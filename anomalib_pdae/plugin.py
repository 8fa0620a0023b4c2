"""How an unmodified anomalib finds this package's models.

anomalib 2.7 resolves ``--model Name``, ``get_model("name")`` and the benchmark grid only among
classes that are attributes of ``anomalib.models`` (or already imported subclasses). The start-up
file ``anomalib_pdae.pth`` calls :func:`install`, which waits for ``anomalib.models`` to be
imported and then adds every model declared in the ``anomalib.models`` entry-point group, ours
and any other package's. It also waits for anomalib's CLI module, whose parsers then report a bad
``weights`` file in one line (:mod:`anomalib_pdae.cli`). Until anomalib itself is imported nothing
heavy is loaded, so a Python process that never touches anomalib does not pay for torch.
"""

from __future__ import annotations

import importlib.abc
import sys
import warnings
from types import ModuleType

ENTRY_POINT_GROUP = "anomalib.models"
_MODELS = "anomalib.models"
_CLI = "anomalib.cli.cli"


def register_models(models_module: ModuleType) -> list[str]:
    """Add every model of the ``anomalib.models`` entry-point group to ``models_module``.

    A model whose import fails is reported with a warning and left out; anomalib keeps working.

    Example:
        >>> import anomalib.models
        >>> "Ldknn" in register_models(anomalib.models)
        True
    """
    from importlib.metadata import entry_points

    registered = []
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            model_class = entry_point.load()
        except Exception as error:  # a broken plugin must never break anomalib
            warnings.warn(
                f"anomalib plugin model {entry_point.name!r} ({entry_point.value}) could not be imported "
                f"and is not available: {type(error).__name__}: {error}",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        _add(models_module, entry_point.name, model_class)
        registered.append(entry_point.name)
    return registered


def _add(models_module: ModuleType, name: str, model_class: type) -> None:
    setattr(models_module, name, model_class)
    public = getattr(models_module, "__all__", None)
    if isinstance(public, list) and name not in public:
        public.append(name)


def _after_import(module: ModuleType) -> None:
    """Extend a just-imported anomalib module: models into ``anomalib.models``, error reports into the CLI."""
    if module.__name__ == _MODELS:
        register_models(module)
    elif module.__name__ == _CLI:
        try:
            from anomalib_pdae.cli import report_weights_errors

            report_weights_errors(module.AnomalibCLI)
        except Exception as error:  # as for the models: never break anomalib's CLI
            warnings.warn(
                f"anomalib's CLI will print bad weights files as tracebacks: {type(error).__name__}: {error}",
                RuntimeWarning,
                stacklevel=2,
            )


class _ExtendingLoader(importlib.abc.Loader):
    """Runs the real loader of an anomalib module, then extends the module."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _after_import(module)

    def __getattr__(self, name: str):
        return getattr(self._loader, name)


class _AnomalibFinder(importlib.abc.MetaPathFinder):
    """Finds ``anomalib.models`` and anomalib's CLI the usual way, hands back specs with extending loaders."""

    def find_spec(self, fullname: str, path, target=None):
        if fullname not in {_MODELS, _CLI}:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _ExtendingLoader(spec.loader)
                return spec
        return None


def install() -> None:
    """Make anomalib find the plugin models and its CLI report bad weights; safe to call repeatedly."""
    if any(isinstance(finder, _AnomalibFinder) for finder in sys.meta_path):
        return
    for name in (_MODELS, _CLI):
        if name in sys.modules:
            _after_import(sys.modules[name])
    sys.meta_path.insert(0, _AnomalibFinder())
