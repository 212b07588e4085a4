"""``wrap``: the user's loss, unchanged, measured now and then during training.

``wrap(fn, policy=, reference=, every=N)`` returns a callable that returns exactly ``fn(*args,
**kwargs)`` (the same tensor: same value, same graph, same gradient).  On the first call and every
N-th after, *before* the real call, it measures the coefficient on detached float64 copies of that
call's arguments (``batch.py``): the family, and how far the coefficient is from -log(delta) over the
deltas of this batch.  The copies and their graphs are dropped before the real call; only plain
numbers are kept.  Each report is logged on the ``klaudit.probe`` logger and appended to
``.reports``; a measurement that fails is logged as a warning (``.errors``) and never breaks training.

Caveat: while a measurement runs, ``Tensor.backward`` is intercepted (process-wide) so that a
function that calls ``backward()`` itself can be measured; do not run backward passes in other
threads at that moment.
"""
from __future__ import annotations

import functools
import logging
import time
from typing import Callable, List, Optional, Tuple

from .batch import measure_batch
from .errors import ProbeError
from .report import CoefficientReport

LOG = logging.getLogger("klaudit.probe")


class ProbedFunction:
    """Callable like the wrapped function; ``reports``, ``errors``, ``calls`` and ``probe_seconds``."""

    def __init__(self, fn: Callable, policy: str, reference: str, every: int, kind: str = "auto",
                 logger: Optional[logging.Logger] = None, level: int = logging.INFO, keep: int = 1000):
        if not isinstance(policy, str) or not isinstance(reference, str):
            raise ProbeError("wrap: policy and reference are the names of tensor parameters")
        if every < 0:
            raise ProbeError("wrap: every must be >= 0 (0: never measure)")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.policy, self.reference, self.every, self.kind = policy, reference, every, kind
        self.logger = logger or LOG
        self.level = level
        self.keep = keep
        self.reports: List[CoefficientReport] = []
        self.errors: List[Tuple[int, str]] = []
        self.calls = 0
        self.probe_seconds = 0.0

    @property
    def last(self) -> Optional[CoefficientReport]:
        return self.reports[-1] if self.reports else None

    def due(self) -> bool:
        """Whether the next call will be measured."""
        return self.every > 0 and self.calls % self.every == 0

    def __call__(self, *args, **kwargs):
        if self.due():
            self._measure(self.calls + 1, args, kwargs)
        self.calls += 1
        return self.fn(*args, **kwargs)

    def _measure(self, step: int, args, kwargs) -> None:
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        t0 = time.perf_counter()
        try:
            rep = measure_batch(self.fn, args, kwargs, self.policy, self.reference, self.kind, step=step)
        except Exception as e:  # noqa: BLE001 - the probe must never break a training step
            msg = f"{type(e).__name__}: {e}"
            self.errors.append((step, msg))
            self.logger.warning("klaudit probe: %s (call %d) could not be measured: %s", name, step, msg)
            return
        finally:
            self.probe_seconds += time.perf_counter() - t0
        self.reports.append(rep)
        del self.reports[: max(0, len(self.reports) - self.keep)]
        self.logger.log(self.level, "klaudit probe: %s (call %d): %s", name, step, rep)


def wrap(fn: Callable, policy: str = "logp", reference: str = "ref_logp", every: int = 100, *,
         kind: str = "auto", logger: Optional[logging.Logger] = None, level: int = logging.INFO,
         keep: int = 1000) -> ProbedFunction:
    """``fn`` unchanged, measured on the first call and every ``every``-th call after (see module doc).

    ``policy`` / ``reference``: names of ``fn``'s tensor parameters holding the per-token log-probs of
    the policy (with grad) and of the reference.  ``keep``: how many reports to retain."""
    return ProbedFunction(fn, policy, reference, every, kind, logger, level, keep)
