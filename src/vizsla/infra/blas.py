"""One BLAS thread for the small matrix products that sit next to a busy inference runtime.

numpy's OpenBLAS runs any product above a tiny size on a thread per core, and its threads then spin
waiting for more work. Next to ONNX Runtime's threads and a decode pool on the same 2 cores, a head-only
model's numpy head (8 x 1280 features times 1280 x 102) took ~1.4 ms a batch instead of ~50 us on one
thread, and the spinning threads took cores from the backbone and the decoders: a decode + int8 backbone +
numpy head loop ran at 103-111 images/s with OpenBLAS's default threads and 175 with one (flowers102,
machine shared with another job; see docs/benchmarks.md for the idle figures). threadpoolctl (what
scikit-learn uses for the same problem) sets the limit around the product only, so a user's own numpy
work in the same process keeps every thread.
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager
from typing import Any


@functools.cache
def _controller() -> Any:
    """The process's BLAS libraries, found once (a scan of the loaded libraries takes ~1 ms)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread() -> AbstractContextManager[Any]:
    """A context in which numpy's matrix products run on one thread (~10 us to enter and leave)."""
    return _controller().limit(limits=1, user_api="blas")
