"""The cyclic garbage collector paused for a block of work (stdlib only; any layer).

Loading a machine, predicting its groups and writing a big document each make many small
objects and no reference cycles: refcounting frees them, and the collector's passes would
only rescan the ones still alive, again and again as they pile up (at 100,000 functions,
single passes of 120-140 ms). Nothing run inside must leave cycles behind.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused"]


@contextmanager
def paused() -> Iterator[None]:
    """The collector off inside the block, and back as it was after (nesting is fine)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
