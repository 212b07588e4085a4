"""Derive what a KL term does to the gradient.

For a lifted core expression E(logp, ref, old):

* value: E with stop-gradients removed, on-policy (old = logp), as a function of
  ell = logp - ref; matched against the estimator templates k1, k2, k3, abs (and the inverted k3);
* coefficient as a loss: c = dE/dlogp (stop-gradient derivative 0, clamp derivative 0 outside its
  bounds), on-policy, as a function of delta = pi_ref/pi;
* coefficient in the reward: the value itself (it multiplies the score function);
* principled: c affine in -log(delta) with a positive scale.

Classification fits templates numerically on a grid of ell, then confirms the fit symbolically
with sympy (``verified``); the result is a plain ``Derivation`` (no sympy objects) cached by the
canonical key of the expression.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Tuple

from .. import ir
from . import families as F
from .budget import Budget, BudgetExceeded
from .canonical import canonical

GRID = (-2.0, -1.4, -0.9, -0.45, -0.1, 0.2, 0.55, 1.0, 1.5, 1.95)
WIDE = tuple(x / 4.0 for x in range(-60, 61))
OTHER = (-1.7, -0.35, 0.8)
MAX_NODES = 600


@dataclass(frozen=True)
class Derivation:
    key: str
    kind: str  # "estimator" (a KL value), "surrogate" (gradient-only), "full", "none"
    estimator: str  # k1 k2 k3 abs full k3_inverted unknown
    value_scale: float = 0.0  # E ~ value_scale * template (+ value_offset); negative: negated estimator
    value_offset: float = 0.0
    anchor: str = ""  # ref | old | teacher
    sampler: str = ""  # policy | old (which log-prob the samples' side uses)
    direction: str = "unknown"  # reverse | forward | unknown
    expression: str = ""  # the lifted expression, in logp, ref, old
    value_form: str = ""
    loss_family: str = "unknown"  # coefficient template name when differentiated as a loss
    loss_scale: float = 0.0
    loss_offset: float = 0.0
    loss_coefficient: str = ""  # c(delta), normalised by the scale
    loss_zero_ranges: Tuple[Tuple[float, float], ...] = ()  # ell ranges where the loss gradient is 0
    reward_family: str = "unknown"
    reward_scale: float = 0.0
    reward_coefficient: str = ""
    grad_free: bool = False  # no derivative with respect to logp at all
    is_weight: str = "none"  # none | differentiable | detached | sequence
    has_clamp: bool = False
    verified: bool = False  # the template fit was confirmed symbolically
    note: str = ""
    underived: bool = False  # too large, too deep or out of budget: nothing is known about it
    derivative: str = ""  # dE/dlogp as text

    def loss_principled(self) -> bool:
        return self.loss_family == F.PRINCIPLED and self.loss_scale > 0

    def reward_principled(self) -> bool:
        return self.reward_family == F.PRINCIPLED and self.reward_scale > 0

    def to_dict(self) -> dict:
        return asdict(self)


_MEMO: Dict[str, Derivation] = {}
_DISK = None  # set by the cache layer: an object with get(key) / put(key, dict)


def set_disk_cache(cache) -> None:
    global _DISK
    _DISK = cache


def derive(core: ir.Expr, budget_s: float = 2.0) -> Derivation:
    key = canonical(core)
    d = _MEMO.get(key)
    if d is not None:
        return d
    if _DISK is not None:
        raw = _DISK.get(key)
        if raw is not None:
            try:
                raw = dict(raw)
                raw["loss_zero_ranges"] = tuple(tuple(r) for r in raw.get("loss_zero_ranges", ()))
                d = Derivation(**raw)
                _MEMO[key] = d
                return d
            except TypeError:
                pass
    timed_out = False
    if ir.size(core, MAX_NODES + 1) > MAX_NODES:
        d = Derivation(key, "none", "unknown", note="expression too large to derive", underived=True)
    else:
        try:
            with Budget(budget_s):
                d = _derive(key, core)
        except BudgetExceeded:
            timed_out = True
            d = Derivation(key, "none", "unknown", note=f"derivation exceeded its {budget_s:g}s budget",
                           underived=True)
        except (RecursionError, MemoryError):
            d = Derivation(key, "none", "unknown", note="derivation too deep", underived=True)
    _MEMO[key] = d
    if _DISK is not None and not timed_out:  # a larger budget later must try again
        _DISK.put(key, d.to_dict())
    return d


# ------------------------------------------------------------------------------------ the derivation


def _derive(key: str, core: ir.Expr) -> Derivation:
    import sympy as sp

    from . import symbolic as S

    E, lifter = S.lift(core)
    if E is None:
        return Derivation(key, "none", "unknown", note="; ".join(lifter.notes))
    free = _all_symbols(E)
    names = {s.name for s in free}
    dist = {S.DIST_P, S.DIST_R, S.DIST_T} & free
    if dist:
        return _derive_full(key, E, free, S)
    has_lp, has_old, has_ref, has_t = "logp" in names, "old" in names, "ref" in names, "teacher" in names
    extra_policy = any(n.startswith("logp_") or n.startswith("ref_") or n.startswith("old_") for n in names)
    if extra_policy:
        return Derivation(key, "none", "unknown", expression=str(E),
                          note="more than one policy or reference tensor: not a function of one log-ratio")
    if has_ref or has_t:
        anchor = "ref" if has_ref else "teacher"
        sampler = "policy" if has_lp else "old"
        A = S.REF if has_ref else S.TEACHER
    elif has_lp and has_old:
        anchor, sampler, A = "old", "old", None
    else:
        return Derivation(key, "none", "unknown", expression=str(E), note="no log-ratio between two policies")
    has_clamp = E.has(S.Clamp)
    ell = S.ELL
    V = S.strip_stopgrad(S.clamp_to_identity(E))
    if anchor == "old":
        # trust-region statistic: samples from pi_old; log-ratio of the sampler to the trained policy
        Vs = V.subs(S.LOGP, S.OLD - ell)
        other = S.OLD
    else:
        Vs = V.subs(S.OLD, S.LOGP).subs(S.LOGP, A + ell)
        other = A
    unknown_syms = {s for s in _all_symbols(Vs) if s.name.startswith("u_")}
    value_fn = _numeric(Vs, ell, other)
    vals = _ell_only(value_fn)
    est, vscale, voff, vform, vverified = "unknown", 0.0, 0.0, "", False
    if vals is not None and not unknown_syms:
        m = F.match(vals, GRID, F.VALUES, with_constant=True, tol=1e-7)
        if m is not None and m[0] not in ("zero", "const"):
            est, vscale, voff = m[0], m[1], m[2]
            vform = F.VALUE_FORMS.get(est, "")
            vverified = _confirm(sp, Vs, ell, m, _value_template(sp, est, ell))
    # is there an importance weight (a factor built from logp - old alongside a reference)?
    is_weight = "none"
    if anchor in ("ref", "teacher") and has_lp:
        is_weight = _weight_kind(sp, E, S)
    direction = "unknown"
    if est in ("k1", "k2", "k3", "abs"):
        direction = "reverse" if anchor in ("ref", "teacher") else "forward"
        if vscale < 0 and est == "k1" and anchor == "old":
            est, vscale = "k1", vscale  # KL(old||new) written as old - new: a k1 of the sampler
    # --------------------------------------------------------------- coefficient as a loss
    C = sp.diff(E, S.LOGP)
    Cs = S.strip_stopgrad(C)
    derivative = str(Cs)
    loss_family, lscale, loff, lcoef, zero_ranges = "unknown", 0.0, 0.0, "", ()
    grad_free = Cs == 0 or (not Cs.free_symbols and Cs.is_zero)
    cverified = False
    if anchor in ("ref", "teacher"):
        C_ell = Cs.subs(S.OLD, S.LOGP).subs(S.LOGP, A + ell)
        c_fn = _numeric(C_ell, ell, A)
        cvals = _ell_only(c_fn)
        if grad_free:
            loss_family, lcoef = "zero", "0"
        elif cvals is not None and not {s for s in _all_symbols(C_ell) if s.name.startswith("u_")}:
            templates = {k: v[0] for k, v in F.COEFFICIENTS.items()}
            m = F.match(cvals, GRID, templates, with_constant=True, tol=1e-7)
            if m is not None and m[0] != "zero":
                loss_family, lscale, loff = m[0], m[1], m[2]
                lcoef = F.COEFFICIENTS[m[0]][1] if m[0] in F.COEFFICIENTS else "1"
                if m[0] == "const":
                    lscale, loff = m[1], 0.0
                if has_clamp and m[0] not in ("const",):
                    zero_ranges = _zero_ranges(c_fn, templates[m[0]], lscale, loff)
                elif has_clamp and m[0] == "const":
                    zero_ranges = _zero_ranges(c_fn, lambda e: 1.0, lscale, 0.0)
                cverified = _confirm(sp, S.clamp_to_identity(C_ell), ell, m,
                                     _coef_template(sp, m[0], ell))
            elif m is not None and m[0] == "zero":
                loss_family, lcoef, grad_free = "zero", "0", True
            else:
                lcoef = _delta_text(sp, C_ell, ell, S)
    # --------------------------------------------------------------- coefficient in the reward
    rfam, rscale, rcoef = "unknown", 0.0, ""
    if anchor in ("ref", "teacher") and vals is not None and not unknown_syms:
        templates = {k: v[0] for k, v in F.COEFFICIENTS.items()}
        m = F.match(vals, GRID, templates, with_constant=True, tol=1e-7)
        if m is not None and m[0] not in ("zero",):
            rfam, rscale = m[0], m[1]
            rcoef = F.COEFFICIENTS[m[0]][1] if m[0] in F.COEFFICIENTS else ""
    if est == "unknown" and anchor in ("ref", "teacher"):
        full = _token_full(sp, E, S, A)
        if full is not None:
            return full.__class__(**{**full.__dict__, "key": key})
    kind = "estimator" if est != "unknown" else ("surrogate" if loss_family not in ("unknown",) else "none")
    if kind == "surrogate" and vals is None:
        est = "k1" if loss_family == F.PRINCIPLED else "unknown"
    notes = list(lifter.notes)
    return Derivation(
        key=key, kind=kind, estimator=est, value_scale=vscale, value_offset=voff, anchor=anchor, sampler=sampler,
        direction=direction, expression=_pretty(sp, E, S), value_form=vform, loss_family=loss_family,
        loss_scale=lscale, loss_offset=loff, loss_coefficient=lcoef, loss_zero_ranges=zero_ranges,
        reward_family=rfam, reward_scale=rscale, reward_coefficient=rcoef, grad_free=bool(grad_free),
        is_weight=is_weight, has_clamp=bool(has_clamp), verified=bool(vverified or cverified),
        note="; ".join(notes), derivative=derivative,
    )


def _token_full(sp, E, S, A) -> Optional[Derivation]:
    """sum_v pi(v) (log pi(v) - log q(v)) written on tensors whose vocabulary axis the names hid."""
    V = S.strip_stopgrad(E)
    P = S.LOGP
    anchor = "ref" if A == S.REF else "teacher"
    for form, direction in ((sp.exp(P) * (P - A), "reverse"), (sp.exp(A) * (A - P), "forward")):
        if not _maybe_constant(sp, V / form):
            continue
        try:
            ratio = sp.simplify(V / form)
        except Exception:
            continue
        if ratio.is_number and ratio != 0:
            principled = direction == "reverse" and ratio > 0
            return Derivation(
                key="", kind="full", estimator="full", value_scale=float(ratio), anchor=anchor, sampler="policy",
                direction=direction, expression=_pretty(sp, E, S),
                value_form="sum over the vocabulary of p(v) * log-ratio",
                loss_family=F.PRINCIPLED if principled else "fkl", loss_scale=float(ratio) if principled else 0.0,
                loss_coefficient="exact reverse-KL gradient (no sampling)" if principled else
                "exact forward-KL gradient (no sampling)", verified=True,
                reward_family="state_function", reward_coefficient="KL(s_t) (a state function)",
            )
    return None


def _derive_full(key, E, free, S) -> Derivation:
    """Exact KL over the vocabulary: sum_v p(v) (log p(v) - log q(v))."""
    import sympy as sp

    P, R, T = S.DIST_P, S.DIST_R, S.DIST_T
    V = S.strip_stopgrad(E)
    for anchor_sym, anchor in ((R, "ref"), (T, "teacher")):
        if anchor_sym not in free:
            continue
        rev = sp.exp(P) * (P - anchor_sym)
        fwd = sp.exp(anchor_sym) * (anchor_sym - P)
        for form, direction in ((rev, "reverse"), (fwd, "forward")):
            if not _maybe_constant(sp, V / form):
                continue
            ratio = sp.simplify(V / form)
            if ratio.is_number and ratio != 0:
                grad = not (sp.diff(E, P) == 0)
                principled = direction == "reverse" and ratio > 0
                return Derivation(
                    key=key, kind="full", estimator="full", value_scale=float(ratio), anchor=anchor,
                    sampler="policy", direction=direction, expression=_pretty(sp, E, S),
                    value_form=f"sum_v {'pi' if direction == 'reverse' else 'pi_' + anchor}(v) * log-ratio",
                    loss_family=F.PRINCIPLED if principled else ("fkl" if direction == "forward" else "unknown"),
                    loss_scale=float(ratio) if principled else 0.0,
                    loss_coefficient="exact reverse-KL gradient (no sampling)" if principled else
                    "exact forward-KL gradient (no sampling)", grad_free=not grad, verified=True,
                    reward_family="state_function", reward_coefficient="KL(s_t) (a state function)",
                )
    return Derivation(key, "none", "unknown", expression=_pretty(sp, E, S), note="vocabulary-level expression")


# ---------------------------------------------------------------------------------------- helpers


def _maybe_constant(sp, expr) -> bool:
    """A cheap numerical test before ``simplify``: an expression that takes two different values at two
    points of its symbols is certainly not a constant (simplify costs tens of milliseconds)."""
    from sympy.core.function import AppliedUndef

    from . import symbolic as S

    try:
        expr = S.clamp_to_minmax(S.strip_stopgrad(expr))
        # an application of a function the analysis cannot see into is an unknown value: a fresh
        # symbol per distinct application (simplify cannot see into it either)
        opaque = sorted((a for a in expr.atoms(sp.Function) if isinstance(a, (AppliedUndef, S.Unknown))), key=str)
        if opaque:
            expr = expr.xreplace({a: sp.Dummy(f"u{i}", real=True) for i, a in enumerate(opaque)})
    except Exception:
        return True
    syms = sorted(expr.free_symbols, key=str)
    if not syms:
        return True
    vals = []
    for pt in ((0.37, -1.21, 0.83, -0.45), (-0.92, 0.58, -0.17, 1.34)):
        try:
            v = complex(expr.subs({s: pt[i % len(pt)] + 0.011 * i for i, s in enumerate(syms)}).evalf())
        except Exception:
            return True  # cannot tell numerically: let simplify decide
        vals.append(v)
    a, b = vals
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def _all_symbols(E):
    return E.free_symbols


def _clamp_num(x, lo, hi):
    return min(max(x, lo), hi)


def _sign_num(x):
    return (x > 0) - (x < 0)


_NUMERIC_NS = {"Min": min, "Max": max, "Clamp": _clamp_num, "sign": _sign_num, "StopGrad": lambda x: x}


def _numeric(expr, ell, other):
    import sympy as sp

    from . import symbolic as S

    expr = expr.replace(lambda x: isinstance(x, S.StopGrad), lambda x: x.args[0])
    try:
        f = sp.lambdify((ell, other), expr, modules=[_NUMERIC_NS, "math"])
    except Exception:
        return None

    def call(e, o):
        try:
            v = f(e, o)
            v = float(v)
            return v if math.isfinite(v) else None
        except Exception:
            return None

    return call


def _ell_only(fn):
    """Values on GRID if the function depends on ell alone (checked at several values of the other
    symbol); None otherwise."""
    if fn is None:
        return None
    out = []
    for e in GRID:
        vs = [fn(e, o) for o in OTHER]
        if any(v is None for v in vs):
            return None
        if max(vs) - min(vs) > 1e-9 * max(1.0, max(abs(v) for v in vs)):
            return None
        out.append(vs[0])
    return out


def _zero_ranges(c_fn, template, a, b) -> Tuple[Tuple[float, float], ...]:
    """ell intervals of WIDE where the measured coefficient is 0 but the matched family is not."""
    zs = []
    for e in WIDE:
        v = c_fn(e, 0.3)
        expect = a * template(e) + b
        zs.append(v is not None and abs(v) < 1e-12 and abs(expect) > 1e-9)
    def is_zero(e):
        v = c_fn(e, 0.3)
        return v is not None and abs(v) < 1e-12 and abs(a * template(e) + b) > 1e-9

    def edge(lo, hi):
        """The boundary between lo (zero-ness z_lo) and hi, by bisection."""
        z_lo = is_zero(lo)
        for _ in range(40):
            mid = (lo + hi) / 2
            if is_zero(mid) == z_lo:
                lo = mid
            else:
                hi = mid
        return round((lo + hi) / 2, 4)

    ranges = []
    start = None
    for i, z in enumerate(zs):
        if z and start is None:
            start = WIDE[0] if i == 0 else edge(WIDE[i - 1], WIDE[i])
        if not z and start is not None:
            ranges.append((start, edge(WIDE[i - 1], WIDE[i])))
            start = None
    if start is not None:
        ranges.append((start, WIDE[-1]))
    return tuple(ranges)


def _value_template(sp, name, ell):
    return {
        "k1": ell, "k2": ell ** 2 / 2, "k3": sp.exp(-ell) - 1 + ell, "abs": sp.Abs(ell),
        "k3_inverted": sp.exp(ell) - 1 - ell,
    }.get(name)


def _coef_template(sp, name, ell):
    return {
        "const": sp.Integer(1), "ell": ell, "one_minus_delta": 1 - sp.exp(-ell), "sign": sp.sign(ell),
        "inv_delta_minus_one": sp.exp(ell) - 1, "half_ell_sq": ell ** 2 / 2, "k3_value": sp.exp(-ell) - 1 + ell,
        "abs_ell": sp.Abs(ell), "ell_one_plus_half_ell": ell * (1 + ell / 2),
    }.get(name)


def _confirm(sp, expr, ell, m, template) -> bool:
    """Symbolic check that expr == a*template + b (a, b rationalised)."""
    if template is None:
        return False
    from . import symbolic as S

    name, a, b, _ = m
    try:
        ar = sp.nsimplify(a, rational=True, tolerance=1e-9)
        br = sp.nsimplify(b, rational=True, tolerance=1e-9)
        e = S.strip_stopgrad(S.clamp_to_identity(expr))
        e = e.replace(lambda x: isinstance(x, sp.Piecewise), lambda x: x.args[0][0])
        diff = sp.expand(e - (ar * template + br))
        if diff == 0:
            return True
        diff = sp.simplify(diff)
        return diff == 0
    except Exception:
        return False


def _weight_kind(sp, E, S) -> str:
    """Is there an importance ratio exp(logp - old) (or exp(logp - sg(logp))) next to the reference,
    and does it keep its gradient?"""
    def ratio_like(x) -> bool:
        if not isinstance(x, sp.exp):
            return False
        arg = x.args[0]
        has_lp_live = arg.has(S.LOGP) and (arg - S.strip_stopgrad(arg) != 0 or True)
        rollout = arg.has(S.OLD) or any(isinstance(y, S.StopGrad) and y.has(S.LOGP)
                                        for y in sp.preorder_traversal(arg))
        return has_lp_live and rollout and not arg.has(S.REF) and not arg.has(S.TEACHER)

    live, detached = False, False

    def go(x, frozen):
        nonlocal live, detached
        if isinstance(x, S.StopGrad):
            for a in x.args:
                go(a, True)
            return
        if ratio_like(x):
            if frozen:
                detached = True
            else:
                live = True
        for a in x.args:
            go(a, frozen)

    go(E, False)
    if live:
        return "differentiable"
    if detached:
        return "detached"
    return "none"


def _delta_text(sp, C_ell, ell, S) -> str:
    try:
        d = S.strip_stopgrad(C_ell).subs(ell, -sp.log(S.DELTA))
        return str(sp.simplify(d))[:120]
    except Exception:
        return str(C_ell)[:120]


def _pretty(sp, E, S) -> str:
    try:
        s = str(E)
    except Exception:
        return "?"
    return s.replace("StopGrad", "sg").replace("Clamp", "clamp")
