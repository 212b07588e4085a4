"""``assert_principled``: a test-suite check that a KL implementation has the reverse-KL gradient."""
from __future__ import annotations

from typing import Callable

from .measure import measure
from .report import CoefficientReport


class NotPrincipledError(AssertionError):
    """Raised by :func:`assert_principled`; ``.report`` is the measurement."""

    def __init__(self, message: str, report: CoefficientReport):
        super().__init__(message)
        self.report = report


def assert_principled(fn: Callable, policy="logp", reference="ref_logp", *, allow_clamp: bool = False,
                      **kwargs) -> CoefficientReport:
    """Measure ``fn`` (arguments as :func:`klaudit.probe.measure`) and raise :class:`NotPrincipledError`
    unless its coefficient is a positive multiple of -log(delta) (plus a constant), with no clamped
    region unless ``allow_clamp``.  Returns the report when it passes."""
    rep = measure(fn, policy, reference, **kwargs)
    if not rep.principled:
        raise NotPrincipledError(f"KL gradient is not principled: {rep}", rep)
    if rep.clamped and not allow_clamp:
        raise NotPrincipledError(f"KL gradient is principled but clamped to zero on part of the range: {rep}", rep)
    return rep
