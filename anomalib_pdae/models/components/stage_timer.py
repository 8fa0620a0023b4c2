"""Wall-clock seconds of a model's named stages, recorded by the model and read by benchmarks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class StageTimer:
    """Seconds of the last run of each named stage (e.g. a memory bank's ``coreset``).

    A model times its own stages with ``with self.timer("coreset"): ...``; a benchmark reads
    :attr:`seconds` afterwards, so no model function is wrapped from outside.

    Example:
        >>> timer = StageTimer()
        >>> with timer("coreset"):
        ...     pass
        >>> list(timer.seconds), timer.seconds["coreset"] >= 0
        (['coreset'], True)
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        """Time the enclosed block as ``stage`` (replacing an earlier time of that stage)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = time.perf_counter() - started
