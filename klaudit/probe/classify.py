"""Match measured coefficients against the coefficient templates shared with the static analyzer.

Plain numbers in, plain numbers out (no torch): the measured per-point coefficients c(ell) are fitted
as ``a * template(ell) + b`` on the fitting range; a template matches when the relative residual is
below ``tol``.  A clamp shows as points where the coefficient is exactly zero while the matched
template is not, so when no template fits every point the fit is retried on the nonzero points, and
the zero ones are then reported as clamped rather than forcing a worse template.  Points outside the
fitting range that are neither on the template nor zero are reported as deviating.  When nothing fits,
every template is listed with its residual.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..derive import families as F

TOL = 1e-6  # relative residual for a match (float64 measurements are exact to ~1e-13)
ZERO = 1e-30  # below this everything measured is "no gradient at all"
MIN_POINTS = 6


def templates() -> Dict[str, Callable[[float], float]]:
    return {k: v[0] for k, v in F.COEFFICIENTS.items()}


_TEMPLATES = templates()


@dataclass(frozen=True)
class Fit:
    template: Optional[str]  # a COEFFICIENTS name, "zero" (no gradient), or None (unmatched)
    scale: float = 0.0
    offset: float = 0.0
    residual: float = 0.0
    alternatives: Tuple[Tuple[str, float, float, float], ...] = ()  # (template, a, b, residual), best first
    clamped: Tuple[float, ...] = ()  # ell where the coefficient is 0 but the template is not
    deviating: Tuple[float, ...] = ()  # ell where it is neither the template nor 0
    skipped: int = 0  # points with a non-finite coefficient

    def predict(self, ell: float) -> float:
        if self.template in (None, "zero"):
            return 0.0
        f = _TEMPLATES.get(self.template) or templates()[self.template]
        return self.scale * f(ell) + self.offset


@dataclass
class _Pass:
    name: str
    a: float
    b: float
    res: float
    clamped: List[float] = field(default_factory=list)
    deviating: List[float] = field(default_factory=list)


def classify(ells: Sequence[float], values: Sequence[float], fit_mask: Sequence[bool], tol: float = TOL) -> Fit:
    """``values[i]`` measured at ``ells[i]``; ``fit_mask[i]``: use the point for fitting."""
    pts = [(e, v, m) for e, v, m in zip(ells, values, fit_mask) if v is not None and math.isfinite(v)]
    skipped = len(ells) - len(pts)
    if not pts:
        return Fit(None, skipped=skipped)
    scale_ref = max(abs(v) for _, v, _ in pts)
    if scale_ref < ZERO:
        return Fit("zero", skipped=skipped)
    fit_pts = [(e, v) for e, v, m in pts if m]
    tpl = templates()
    ranking = _rank(fit_pts, tpl, scale_ref)
    candidates: List[_Pass] = []
    if ranking and ranking[0][3] < tol:
        candidates.append(_Pass(*ranking[0]))
    else:
        nonzero = [(e, v) for e, v in fit_pts if abs(v) > 1e-12 * scale_ref]
        if len(nonzero) >= MIN_POINTS and len(nonzero) < len(fit_pts):
            for name, a, b, res in _rank(nonzero, tpl, scale_ref):
                if res < tol:
                    candidates.append(_Pass(name, a, b, res))
    for c in candidates:
        _check(c, pts, tpl, scale_ref)
    if not candidates:
        return Fit(None, alternatives=tuple(ranking[:4]), skipped=skipped)
    best = min(candidates, key=lambda c: (len(c.clamped) + len(c.deviating), c.res))
    return Fit(best.name, best.a, best.b, best.res, tuple(ranking[:4]), tuple(best.clamped),
               tuple(best.deviating), skipped)


def residual_of(fit: Fit) -> float:
    """The matched template's residual; for an unmatched coefficient, the closest template's."""
    if fit.template is not None:
        return fit.residual
    return fit.alternatives[0][3] if fit.alternatives else float("nan")


def _rank(pts, tpl, scale_ref: float):
    """F.rank without the degenerate fits (a template times ~0 plus a constant is the constant)."""
    ells = [e for e, _ in pts]
    out = []
    for name, a, b, res in F.rank([v for _, v in pts], ells, tpl):
        if name != "const":
            ts = [tpl[name](e) for e in ells]
            if abs(a) * (max(ts) - min(ts)) <= 1e-9 * scale_ref:
                continue
        out.append((name, a, b, res))
    return out


def _check(c: _Pass, pts, tpl, scale_ref: float) -> None:
    f = tpl[c.name]
    for e, v, _ in pts:
        pred = c.a * (1.0 if c.name == "const" else f(e)) + c.b
        if abs(v - pred) <= 1e-6 * max(abs(pred), abs(v)) + 1e-9 * scale_ref:
            continue
        if abs(v) <= 1e-12 * scale_ref:
            c.clamped.append(e)
        else:
            c.deviating.append(e)


def runs(ells_sorted: Sequence[float], flagged: Sequence[bool]) -> List[Tuple[int, int]]:
    """Index ranges [i, j] of consecutive flagged points."""
    out, start = [], None
    for i, f in enumerate(flagged):
        if f and start is None:
            start = i
        if not f and start is not None:
            out.append((start, i - 1))
            start = None
    if start is not None:
        out.append((start, len(flagged) - 1))
    return out


def clamp_intervals(fit: Fit, ells: Sequence[float]):
    """Intervals of ell (grid resolution) where ``fit`` found the coefficient clamped to zero, and the
    boundaries that bound them: ([[lo, hi], ...], [(interval index, side 0|1, ok ell, clamped ell)]).
    An interval that reaches the end of the grid is open (+-inf) on that side."""
    if not fit.clamped:
        return [], []
    pts = sorted(set(ells))
    flagged = [e in fit.clamped for e in pts]
    intervals, bounds = [], []
    for lo_i, hi_i in runs(pts, flagged):
        lo = -math.inf if lo_i == 0 else (pts[lo_i - 1] + pts[lo_i]) / 2
        hi = math.inf if hi_i == len(pts) - 1 else (pts[hi_i] + pts[hi_i + 1]) / 2
        if lo_i > 0:
            bounds.append((len(intervals), 0, pts[lo_i - 1], pts[lo_i]))
        if hi_i < len(pts) - 1:
            bounds.append((len(intervals), 1, pts[hi_i + 1], pts[hi_i]))
        intervals.append([lo, hi])
    return intervals, bounds
