"""How an unmodified anomalib finds this package's models.

anomalib 2.7 resolves ``--model Name``, ``get_model("name")`` and the benchmark grid only among
classes that are attributes of ``anomalib.models`` (or already imported subclasses). The start-up
file ``anomalib_pdae.pth`` calls :func:`install`, which waits for ``anomalib.models`` to be
imported and then adds every model declared in the ``anomalib.models`` entry-point group, ours
and any other package's. Until anomalib itself is imported nothing heavy is loaded, so a Python
process that never touches anomalib does not pay for torch.
"""

from __future__ import annotations

import importlib.abc
import sys
import warnings
from types import ModuleType

ENTRY_POINT_GROUP = "anomalib.models"
_TARGET = "anomalib.models"


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


class _RegisteringLoader(importlib.abc.Loader):
    """Runs the real loader of ``anomalib.models``, then registers the plugin models in it."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        register_models(module)

    def __getattr__(self, name: str):
        return getattr(self._loader, name)


class _AnomalibModelsFinder(importlib.abc.MetaPathFinder):
    """Finds ``anomalib.models`` the usual way and hands back a spec with a registering loader."""

    def find_spec(self, fullname: str, path, target=None):
        if fullname != _TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None


def install() -> None:
    """Make anomalib find the plugin models; safe to call any number of times."""
    if any(isinstance(finder, _AnomalibModelsFinder) for finder in sys.meta_path):
        return
    if _TARGET in sys.modules:
        register_models(sys.modules[_TARGET])
    sys.meta_path.insert(0, _AnomalibModelsFinder())
