"""Wall-clock time of a call."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def timed(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``call(*args, **kwargs)`` and its wall-clock seconds."""
    started = time.perf_counter()
    result = call(*args, **kwargs)
    return result, time.perf_counter() - started
