"""Every docstring example in the package and in the benchmarks runs and prints what it shows.

Examples that need ImageNet weights from the model hub or a dataset on disk are marked
``# doctest: +SKIP``: they show usage, the tests of each model cover what they do.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import anomalib_pdae
import benchmarks


def _modules() -> list[str]:
    names = []
    for package in (anomalib_pdae, benchmarks):
        names.append(package.__name__)
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if not module.name.endswith("__main__"):
                names.append(module.name)
    return names


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # some examples write files where they run
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
