"""One thread per worker process: the environment that pins BLAS / OpenMP / numba.

Worker pools of the toys (:mod:`likelihood.toys`) and of the scan (:mod:`recast.scan`)
start their processes with these variables set, so that they apply when numpy is first
imported there.  Standard library only.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["THREAD_ENV", "pin_worker_threads", "pinned_threads"]

#: Environment variables that pin BLAS / OpenMP / numba to one thread per process.
THREAD_ENV: dict[str, str] = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}


def pin_worker_threads() -> None:
    """In a worker process: the one-thread variables, unless the user set them."""
    for key, value in THREAD_ENV.items():
        os.environ.setdefault(key, value)


@contextlib.contextmanager
def pinned_threads() -> Iterator[None]:
    """Set the one-thread variables in this process's environment while workers start."""
    saved = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update(THREAD_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
