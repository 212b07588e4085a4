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


# ------------------------------------------------------------------------------------------------
# Shared by the static analyzer and the runtime probe: which family a coefficient template names in
# a placement, how a template behaves at delta = 1, and a ranking of every template against measured
# values (so an unmatched coefficient can be reported with its residuals instead of being forced).

# The coefficient template of each family in FAMILIES (a name in COEFFICIENTS).
FAMILY_TEMPLATES: Dict[str, str] = {
    "k1_loss": "const",
    "k2_loss": "ell",
    "k3_loss": "one_minus_delta",
    "abs_loss": "sign",
    "k3inv_loss": "inv_delta_minus_one",
    "k1_reward": "ell",
    "k2_reward": "half_ell_sq",
    "k3_reward": "k3_value",
    "abs_reward": "abs_ell",
}

# Exact (vocabulary-level, no sampling) KL terms.  Their gradient with respect to the logits is
# sum_v pi(v) c(v) s(v) with the coefficient below, up to a per-state constant (a baseline).
EXACT_FAMILIES: List[Family] = [
    Family("full_loss", "full", "as_loss", "-log(delta) (exact, over the vocabulary)", lambda e: e, True,
           "reverse KL(pi || pi_ref)"),
    Family("full_forward_loss", "full_forward", "as_loss", "1 - delta (exact, over the vocabulary)",
           lambda e: 1.0 - math.exp(-e), False, "forward KL(pi_ref || pi)"),
]
EXACT_TEMPLATES: Dict[str, str] = {"full_loss": "ell", "full_forward_loss": "one_minus_delta"}
BY_NAME.update({f.name: f for f in EXACT_FAMILIES if f.name not in BY_NAME})

# d template / d ell at ell = 0 (delta = 1): the first-order behaviour near the reference.  None where
# the template has a kink there (sign, |ell|).  A coefficient whose slope here is 0 exerts no
# first-order restoring force toward pi_ref.
SLOPES_AT_DELTA_ONE: Dict[str, Optional[float]] = {
    "const": 0.0,
    "ell": 1.0,
    "one_minus_delta": 1.0,
    "sign": None,
    "inv_delta_minus_one": 1.0,
    "half_ell_sq": 0.0,
    "k3_value": 0.0,
    "abs_ell": None,
    "ell_one_plus_half_ell": 1.0,
}


def family_for(template: str, placement: str, exact: bool = False) -> Optional[Family]:
    """The family whose coefficient is ``template`` in ``placement`` ("as_loss" | "in_reward");
    ``exact`` selects the vocabulary-level families.  None when no family has that coefficient there."""
    if exact:
        for f in EXACT_FAMILIES:
            if EXACT_TEMPLATES[f.name] == template and f.placement == placement:
                return f
        return None
    for f in FAMILIES:
        if FAMILY_TEMPLATES.get(f.name) == template and f.placement == placement:
            return f
    return None


def rank(values: Sequence[float], ells: Sequence[float], templates: Dict[str, Callable[[float], float]],
         with_constant: bool = True) -> List[Tuple[str, float, float, float]]:
    """Every template fitted as ``a*template(ell) + b``, best first: (name, a, b, relative residual).

    A constant coefficient is reported under "const" (a = the constant, b = 0) with its own residual
    (the relative spread of the values); templates that are constant on ``ells`` are left out."""
    out: List[Tuple[str, float, float, float]] = []
    n = len(values)
    if n == 0:
        return out
    rms = math.sqrt(sum(v * v for v in values) / n) or 1.0
    for name, t in templates.items():
        if name == "const":
            mv = sum(values) / n
            res = math.sqrt(sum((v - mv) ** 2 for v in values) / n) / rms
            out.append((name, mv, 0.0, res))
            continue
        r = fit(values, ells, t, with_constant)
        if r is not None:
            out.append((name, r[0], r[1], r[2]))
    out.sort(key=lambda x: x[3])
    return out
