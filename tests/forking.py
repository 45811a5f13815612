"""Work for a process forked in a test (``greenroom.forks.run_forked``)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path


def sleeping(marker: Path, seconds: float, fail: bool = False) -> Callable[[], None]:
    """Work that sleeps ``seconds``, then writes its pid to ``marker`` (and raises if
    ``fail``): the marker tells whether it has got that far."""

    def work() -> None:
        time.sleep(seconds)
        marker.write_text(str(os.getpid()))
        if fail:
            raise RuntimeError("the work failed")

    return work
