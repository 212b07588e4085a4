"""The coefficient families, as plain numbers: no sympy, no torch.

Every KL implementation puts a per-sample coefficient c on the score function.  With
ell = log pi - log pi_ref and delta = pi_ref / pi = exp(-ell), the families below are the ones the
theory names (THEORY.md section 1.2).  The static analyzer matches a derived coefficient against
them; the probe matches a measured one.  ``principled`` means affine-equivalent to -log(delta) with a
positive scale (the reverse-KL gradient; a constant is a zero-mean baseline).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple


@dataclass(frozen=True)
class Family:
    name: str  # e.g. "k3_loss"
    estimator: str  # k1 k2 k3 abs ...
    placement: str  # as_loss | in_reward
    coefficient: str  # c(delta), human form
    fn: Callable[[float], float]  # c as a function of ell
    principled: bool
    minimizes: str  # what the term minimizes in expectation (on-policy)


def _k3(e: float) -> float:
    return math.exp(-e) - 1.0 + e


FAMILIES: List[Family] = [
    Family("k1_loss", "k1", "as_loss", "1", lambda e: 1.0, False, "nothing (zero expected gradient)"),
    Family("k2_loss", "k2", "as_loss", "-log(delta)", lambda e: e, True, "reverse KL(pi || pi_ref)"),
    Family("k3_loss", "k3", "as_loss", "1 - delta", lambda e: 1.0 - math.exp(-e), False,
           "forward KL(pi_ref || pi)"),
    Family("abs_loss", "abs", "as_loss", "sign(-log(delta))", lambda e: (e > 0) - (e < 0), False,
           "total variation 2 TV(pi, pi_ref)"),
    Family("k3inv_loss", "k3_inverted", "as_loss", "1/delta - 1", lambda e: math.exp(e) - 1.0, False,
           "1/2 chi-square(pi || pi_ref)"),
    Family("k1_reward", "k1", "in_reward", "-log(delta)", lambda e: e, True, "reverse KL(pi || pi_ref)"),
    Family("k2_reward", "k2", "in_reward", "log(delta)**2/2", lambda e: 0.5 * e * e, False,
           "E[k2] - reverse KL (no first-order restoring force)"),
    Family("k3_reward", "k3", "in_reward", "delta - 1 - log(delta)", _k3, False,
           "reverse KL - forward KL (no first-order restoring force)"),
    Family("abs_reward", "abs", "in_reward", "|log(delta)|", abs, False, "E|log ratio| - 2 TV"),
]
BY_NAME: Dict[str, Family] = {f.name: f for f in FAMILIES}

# Value templates (the estimator as a function of ell), for classifying what an expression estimates.
VALUES: Dict[str, Callable[[float], float]] = {
    "k1": lambda e: e,
    "k2": lambda e: 0.5 * e * e,
    "k3": _k3,
    "abs": abs,
    "k3_inverted": lambda e: math.exp(e) - 1.0 - e,
}
VALUE_FORMS = {
    "k1": "log(pi/pi_ref)",
    "k2": "log(pi/pi_ref)**2/2",
    "k3": "delta - 1 - log(delta)",
    "abs": "|log(pi/pi_ref)|",
    "k3_inverted": "1/delta - 1 + log(delta)",
}

# Coefficient templates (as functions of ell) with their c(delta) text; "principled" is "ell".
COEFFICIENTS: Dict[str, Tuple[Callable[[float], float], str]] = {
    "const": (lambda e: 1.0, "1"),
    "ell": (lambda e: e, "-log(delta)"),
    "one_minus_delta": (lambda e: 1.0 - math.exp(-e), "1 - delta"),
    "sign": (lambda e: (e > 0) - (e < 0), "sign(-log(delta))"),
    "inv_delta_minus_one": (lambda e: math.exp(e) - 1.0, "1/delta - 1"),
    "half_ell_sq": (lambda e: 0.5 * e * e, "log(delta)**2/2"),
    "k3_value": (_k3, "delta - 1 - log(delta)"),
    "abs_ell": (abs, "|log(delta)|"),
    "ell_one_plus_half_ell": (lambda e: e * (1 + 0.5 * e), "-log(delta)*(1 - log(delta)/2)"),
}
PRINCIPLED = "ell"


def fit(values: Sequence[float], ells: Sequence[float], template: Callable[[float], float],
        with_constant: bool = True) -> Optional[Tuple[float, float, float]]:
    """Least squares ``values ~ a*template(ell) + b``; returns (a, b, relative residual)."""
    ts = [template(e) for e in ells]
    n = len(ts)
    if with_constant:
        mt = sum(ts) / n
        mv = sum(values) / n
        stt = sum((t - mt) ** 2 for t in ts)
        if stt < 1e-18:
            return None
        a = sum((t - mt) * (v - mv) for t, v in zip(ts, values)) / stt
        b = mv - a * mt
    else:
        stt = sum(t * t for t in ts)
        if stt < 1e-18:
            return None
        a = sum(t * v for t, v in zip(ts, values)) / stt
        b = 0.0
    res = math.sqrt(sum((a * t + b - v) ** 2 for t, v in zip(ts, values)) / n)
    scale = math.sqrt(sum(v * v for v in values) / n) or 1.0
    return a, b, res / scale


def match(values: Sequence[float], ells: Sequence[float], templates: Dict[str, Callable[[float], float]],
          with_constant: bool, tol: float = 1e-6) -> Optional[Tuple[str, float, float, float]]:
    """The template that fits exactly (relative residual below ``tol``): (name, a, b, residual)."""
    if all(abs(v) < 1e-14 for v in values):
        return ("zero", 0.0, 0.0, 0.0)
    if max(values) - min(values) < 1e-12 * max(1.0, abs(values[0])):
        return ("const", values[0], 0.0, 0.0) if "const" in templates else None
    best = None
    for name, t in templates.items():
        if name == "const":
            continue
        r = fit(values, ells, t, with_constant)
        if r is None:
            continue
        a, b, res = r
        if abs(a) < 1e-12:
            continue
        if res < tol and (best is None or res < best[3]):
            best = (name, a, b, res)
    return best
