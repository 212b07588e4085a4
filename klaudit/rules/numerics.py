"""KL4xx: numerics that change the gradient (THEORY.md section 6: P10)."""
from __future__ import annotations

from typing import Iterable

from ..model import AS_LOSS, KLTerm
from .base import Hit, Project, penalises_reference
from .helpers_text import ctx as _ctx
from .helpers_text import ranges


def clamp_zeroes_gradient(t: KLTerm, p: Project) -> Iterable[Hit]:
    d = t.derivation
    if t.placement.kind != AS_LOSS or not penalises_reference(t) or not d.loss_zero_ranges:
        return
    live = [(a, b) for a, b in d.loss_zero_ranges if not (a > 12 or b < -12)]
    if not live:
        return
    yield Hit(
        f"a clamp on the KL (or its log-ratio) zeroes its gradient exactly on the most drifted tokens: for "
        f"{ranges(live)} (ell = log pi - log pi_ref) the coefficient is 0 instead of {d.loss_coefficient}"
        f"{'' if d.loss_coefficient == '-log(delta)' else ' (principled: -log(delta))'}. Clip "
        f"the coefficient (or use a straight-through form) instead of the value, or drop the clamp{_ctx(t)}."
    )
