"""Run the per-file stage over a process pool.

Results come back in input order.  A worker that dies (a crash in a native parser, the OOM killer)
breaks the pool; the files it had not finished are then retried one per fresh worker, so the one
that kills its worker is reported with an error and every other file is still analysed.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, List, Optional, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# below this many files a pool costs more to start than it saves
MIN_PARALLEL = 8


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def _context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def map_items(fn: Callable[[T], R], items: Sequence[T], jobs: int,
              on_death: Callable[[T], R]) -> List[R]:
    """``[fn(x) for x in items]``, in ``jobs`` processes when that pays."""
    if jobs <= 1 or len(items) < MIN_PARALLEL:
        return [fn(x) for x in items]
    out: List[Optional[R]] = [None] * len(items)
    pending = list(range(len(items)))
    try:
        with ProcessPoolExecutor(max_workers=min(jobs, len(items)), mp_context=_context()) as ex:
            chunk = max(1, len(items) // (jobs * 8))
            for i, r in enumerate(ex.map(fn, items, chunksize=chunk)):
                out[i] = r
        return out  # type: ignore[return-value]
    except BrokenProcessPool:
        pending = [i for i, r in enumerate(out) if r is None]
    except OSError:  # no processes available: do it here
        pending = [i for i, r in enumerate(out) if r is None]
        for i in pending:
            out[i] = fn(items[i])
        return out  # type: ignore[return-value]
    # isolate the file that kills its worker
    for i in pending:
        try:
            with ProcessPoolExecutor(max_workers=1, mp_context=_context()) as ex:
                out[i] = ex.submit(fn, items[i]).result()
        except BrokenProcessPool:
            out[i] = on_death(items[i])
    return out  # type: ignore[return-value]
