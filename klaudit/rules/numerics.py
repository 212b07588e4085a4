"""KL4xx: numerics that change the gradient (THEORY.md section 6: P10)."""
from __future__ import annotations

from typing import Iterable

from .. import ir
from ..model import AS_LOSS, KLTerm
from .base import Hit, Project, penalises_reference
from .helpers_text import ctx as _ctx
from .helpers_text import ranges


def _runtime_bound_coefficient(t: KLTerm) -> str:
    """The as-loss coefficient of a clamped estimator whose bound is a run-time value (a parameter, a
    config entry): the derivation cannot place the zero ranges, but the estimator inside is known."""
    from ..derive.families import BY_NAME

    d = t.derivation
    if not d.has_clamp or d.loss_zero_ranges or not _live_runtime_clamp(t.core):
        return ""
    fam = BY_NAME.get(f"{d.estimator}_loss")
    return fam.coefficient if fam is not None else ""


def _live_runtime_clamp(e) -> bool:
    """A clamp with a bound that is not a number, on the gradient path (not under a detach)."""
    stack = [e]
    while stack:
        x = stack.pop()
        if isinstance(x, ir.Op):
            if x.op == "sg":
                continue
            if x.op == "clamp" and any(not isinstance(b, (ir.Const, ir.Lit)) for b in x.args[1:]):
                return True
        stack.extend(x.children())
    return False


def clamp_zeroes_gradient(t: KLTerm, p: Project) -> Iterable[Hit]:
    d = t.derivation
    if t.placement.kind != AS_LOSS or not penalises_reference(t):
        return
    coef = _runtime_bound_coefficient(t)
    if coef:
        yield Hit(
            f"a clamp on the KL (or its log-ratio) with a bound set at run time zeroes its gradient exactly on "
            f"the most drifted tokens: wherever the bound is hit the coefficient is 0 instead of {coef}"
            f"{'' if coef == '-log(delta)' else ' (principled: -log(delta))'}. Clip the coefficient (or use a "
            f"straight-through form) instead of the value, or drop the clamp{_ctx(t)}."
        )
        return
    if not d.loss_zero_ranges:
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
