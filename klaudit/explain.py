"""Explain one KL term: the mathematics behind its verdict, derived the way a practitioner would by hand.

From a ``KLTerm`` this builds an ``Explanation`` (plain strings, numbers and tuples; it pickles and turns
into JSON with ``to_dict``):

1. the lifted expression E(logp, ref, old), ``sg(...)`` marking stop-gradients;
2. its derivative dE/dlogp (stop-gradients have derivative 0, a clamp contributes an indicator
   ``1[lo < x < hi]``);
3. the coefficient c(delta) the term puts on grad log pi, delta = pi_ref/pi: as a loss the derivative,
   in the reward the value (THEORY.md section 0), next to the principled -log(delta);
4. the order to which c agrees with -log(delta) at delta = 1, once the scale is matched: both are
   expanded in ell = -log(delta) = log(pi/pi_ref) around 0;
5. the limits of both as delta -> 0 (pi >> pi_ref) and delta -> infinity (pi << pi_ref);
6. what the term minimises in expectation, on-policy (THEORY.md 1.3: a per-sample coefficient c(ell)
   is the gradient of E_{pi_ref}[g(pi/pi_ref)] with g(u) = int_1^u c(log t) dt), and off-policy;
7. the ranges of ell where a clamp zeroes the gradient; the importance weight;
8. for a config-dependent term, the table of its option variants and where the default is set;
9. the rules that fired.

sympy is imported only inside the functions that need it, and every symbolic step runs under a time
budget: an expression sympy cannot handle leaves its field empty with a note instead of hanging.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

from . import model as M

PRINCIPLED = "-log(delta)"
BUDGET_S = 10.0

# What the value of each estimator estimates on-policy (THEORY.md 1.1).
ESTIMATES = {
    "k1": "KL(pi || pi_ref), unbiased (either sign per sample)",
    "k2": "E[ell**2/2]: biased for KL(pi || pi_ref) at third order, >= 0 per sample",
    "k3": "KL(pi || pi_ref), unbiased, >= 0 per sample",
    "abs": "E|ell| >= KL(pi || pi_ref): biased at first order",
    "full": "the exact per-state KL over the vocabulary (no sampling)",
    "k3_inverted": "chi-square(pi || pi_ref) - KL(pi || pi_ref) (the ratio is inverted)",
}


@dataclass(frozen=True)
class Limit:
    delta: str  # "0" or "inf": where delta goes
    coefficient: str  # "1", "0", "+inf", "-inf", "undefined", "" (not computed)
    principled: str
    how: str = "sympy"  # sympy | numeric (a clamp or piecewise coefficient, evaluated far out)


@dataclass(frozen=True)
class ZeroRange:
    """An interval of ell = log(pi/pi_ref) where a clamp makes the gradient exactly zero."""

    ell_lo: float  # may be -inf
    ell_hi: float  # may be +inf

    @property
    def delta_lo(self) -> float:
        return _exp_neg(self.ell_hi)

    @property
    def delta_hi(self) -> float:
        return _exp_neg(self.ell_lo)

    def to_dict(self) -> dict:
        return {"ell": [_json_num(self.ell_lo), _json_num(self.ell_hi)],
                "delta": [_json_num(self.delta_lo), _json_num(self.delta_hi)]}


@dataclass(frozen=True)
class OptionRow:
    """One option variant of a config-dependent term."""

    options: Tuple[Tuple[str, str], ...]
    path: str
    line: int
    estimator: str
    placement: str
    coefficient: str
    principled: bool
    minimizes: str
    default: Optional[bool]
    reachable: bool = True


@dataclass(frozen=True)
class RuleNote:
    code: str
    name: str
    summary: str


@dataclass(frozen=True)
class Explanation:
    path: str
    line: int
    column: int
    function: str
    where: str  # path:line, or path:cell N:line in a notebook
    estimator: str
    placement: str
    use: str = ""  # where the value enters the reward or the loss
    sign: int = 1
    anchor: str = ""
    expression: str = ""  # E(logp, ref, old) with sg(...)
    value_form: str = ""
    estimates: str = ""
    derivative: str = ""  # dE/d(wrt), clamps as indicators
    wrt: str = "logp"  # logp; logpi_v for an exact sum over the vocabulary
    derivative_on_policy: str = ""  # the same with old = logp (only when old appears)
    coefficient_of: str = ""  # "derivative" (as a loss) | "value" (in the reward) | "" (no gradient path)
    coefficient: str = ""  # c(delta)
    coefficient_ell: str = ""  # c as a function of ell = -log(delta)
    family: str = ""  # coefficient template (klaudit/derive/families.py COEFFICIENTS) or ""
    scale: float = 1.0  # c = scale * template + baseline
    baseline: float = 0.0
    principled_coefficient: str = PRINCIPLED
    principled: bool = False
    agreement: str = ""  # "exact" | "order N" | "none" | "" (not computed)
    taylor_order: Optional[int] = None  # highest order of agreement at delta = 1; None: none or exact
    taylor_exact: bool = False
    series: str = ""  # Taylor series of the scale-matched coefficient in ell
    first_difference: str = ""  # the lowest-order term where they differ
    limits: Tuple[Limit, ...] = ()
    minimizes: str = ""
    generator: str = ""  # g(u), u = pi/pi_ref: the term's gradient is grad E_{pi_ref}[g(pi/pi_ref)]
    off_policy: str = ""
    zero_gradient: Tuple[ZeroRange, ...] = ()
    importance_weight: str = "none"
    options: Tuple[OptionRow, ...] = ()
    defaults: Tuple[M.DefaultSource, ...] = ()
    rules: Tuple[RuleNote, ...] = ()
    notes: Tuple[str, ...] = ()
    verified: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["limits"] = {("delta_to_0" if x.delta == "0" else "delta_to_inf"): asdict(x) for x in self.limits}
        d["zero_gradient"] = [z.to_dict() for z in self.zero_gradient]
        d["options"] = [{**asdict(o), "options": [{"option": k, "values": v} for k, v in o.options]}
                        for o in self.options]
        d["rules"] = [asdict(r) for r in self.rules]
        d["notes"] = list(self.notes)
        d["taylor"] = {"agreement": d.pop("agreement"), "order": d.pop("taylor_order"),
                       "exact": d.pop("taylor_exact"), "series": d.pop("series"),
                       "first_difference": d.pop("first_difference")}
        return d


# ------------------------------------------------------------------------------------ explaining


def explain(term: M.KLTerm, notebooks: Optional[dict] = None) -> Explanation:
    """The explanation of ``term`` (never raises on an expression sympy cannot handle)."""
    d = term.derivation
    pl = term.placement
    base = dict(
        path=term.loc.path, line=term.loc.line, column=term.loc.col, function=term.function,
        where=_where(notebooks, term.loc.path, term.loc.line), estimator=d.estimator, placement=pl.kind,
        use=_where(notebooks, pl.loc.path, pl.loc.line) if pl.loc is not None else "", sign=pl.sign,
        anchor=d.anchor, expression=d.expression, value_form=d.value_form if d.anchor != "old" else "",
        estimates=(ESTIMATES.get(d.estimator, "") if d.direction != "forward" or d.estimator != "full" else
                   "the exact per-state forward KL(pi_ref || pi) over the vocabulary") if d.anchor != "old" else
        "a statistic of pi against the rollout policy pi_old (trust region, off-policy drift)",
        importance_weight=d.is_weight, options=_options(term), defaults=tuple(term.defaults), rules=_rules(term.codes),
        principled=M.is_principled(d, pl.kind, pl.sign), verified=d.verified,
    )
    notes = list(term.notes)
    try:
        from .derive.budget import Budget, BudgetExceeded

        try:
            with Budget(BUDGET_S):
                sym = _symbolic(term)
        except BudgetExceeded:
            sym = {"notes": [f"the symbolic explanation exceeded its {BUDGET_S:g}s budget"]}
    except (RecursionError, MemoryError):
        sym = {"notes": ["expression too deep to explain symbolically"]}
    notes.extend(sym.pop("notes", ()))
    base.update(sym)
    if d.note:
        notes.append(d.note)
    base["notes"] = tuple(dict.fromkeys(n for n in notes if n))
    return Explanation(**base)


def explain_all(terms: Iterable[M.KLTerm], notebooks: Optional[dict] = None) -> List[Explanation]:
    return [explain(t, notebooks) for t in terms]


def _where(notebooks, path: str, line: int) -> str:
    from .notebook import locate

    cell, ln = locate(notebooks or {}, path, line)
    return f"{path}:cell {cell}:{ln}" if cell is not None else f"{path}:{ln}"


def _rules(codes: Sequence[str]) -> Tuple[RuleNote, ...]:
    from .rules.registry import BY_CODE

    out = []
    for c in codes:
        r = BY_CODE.get(c)
        out.append(RuleNote(c, r.name if r else "", r.summary if r else ""))
    return tuple(out)


def _family_of(d, placement: str):
    """The named family (klaudit/derive/families.py) of a derivation in a placement, or None."""
    from .derive import families as F

    if placement == M.AS_LOSS:
        if d.kind == "full":
            return F.family_for("ell" if d.loss_family == "ell" else "one_minus_delta", placement, exact=True)
        return F.family_for(d.loss_family, placement)
    if placement == M.IN_REWARD:
        return F.family_for(d.reward_family, placement)
    return None


def _off_path(placement: str) -> str:
    how = {M.METRIC: "the value is only logged", M.MASK_ONLY: "the value is used as a mask",
           M.CONTROLLER: "the value only steers a KL controller"}.get(placement, "klaudit cannot see where the value goes")
    return f"nothing (not on a gradient path: {how})"


def _minimizes_text(d, placement: str, sign: int) -> str:
    if placement not in (M.AS_LOSS, M.IN_REWARD):
        return _off_path(placement)
    if placement == M.AS_LOSS and d.loss_family == "zero":
        return "nothing (no gradient reaches the policy)"
    fam = _family_of(d, placement)
    if fam is None:
        return "unknown (no named family)"
    if M.effective_sign(d, placement, sign) < 0 and fam.name not in ("k1_loss",):
        return f"maximises {fam.minimizes} (wrong sign)"
    return fam.minimizes


def _options(term: M.KLTerm) -> Tuple[OptionRow, ...]:
    return tuple(
        OptionRow(options=tuple(v.options), path=v.loc.path, line=v.loc.line,
                  estimator=_est_name(v.derivation.estimator), placement=v.placement,
                  coefficient=M.coefficient_text(v.derivation, v.placement)
                  if v.placement in (M.AS_LOSS, M.IN_REWARD) else "-",
                  principled=M.is_principled(v.derivation, v.placement),
                  minimizes=_minimizes_text(v.derivation, v.placement, 1), default=v.is_default,
                  reachable=v.reachable)
        for v in term.variants
    )


def _est_name(e: str) -> str:
    return "k3 (inverted ratio)" if e == "k3_inverted" else e


# ------------------------------------------------------------------------------ the symbolic part


class _NotSmooth(Exception):
    pass


def _symbolic(term: M.KLTerm) -> dict:
    """Everything that needs sympy, as Explanation fields (plus "notes")."""
    import sympy as sp

    from .derive import families as F
    from .derive import notation
    from .derive import symbolic as S

    d, pl = term.derivation, term.placement
    out: dict = {"notes": []}
    notes = out["notes"]
    E = _lifted(sp, S, term, notes)
    if E is None:
        return out
    pr = notation.printer()
    out["expression"] = pr(E)
    free = E.free_symbols
    dist = S.DIST_P in free or S.DIST_R in free or S.DIST_T in free
    if dist:
        P, O, A = S.DIST_P, S.DIST_O, (S.DIST_R if S.DIST_R in free else S.DIST_T)
    else:
        P, O, A = S.LOGP, S.OLD, (S.REF if S.REF in free else S.TEACHER)
    ell = S.ELL
    D = sp.diff(E, P)
    out["derivative"] = pr(D)
    out["wrt"] = str(P)
    if O in free:
        out["derivative_on_policy"] = pr(S.strip_stopgrad(D.subs(O, P)))
    if pl.kind not in (M.AS_LOSS, M.IN_REWARD):
        out["minimizes"] = _off_path(pl.kind)
        return out
    if d.anchor not in ("ref", "teacher") or A not in free:
        if d.anchor == "old":
            notes.append("a log-ratio to the rollout policy (a trust-region statistic), not a regulariser toward "
                         "a reference: no coefficient against pi_ref")
        return out
    if pl.kind == M.AS_LOSS:
        out["coefficient_of"] = "derivative"
        C = S.strip_stopgrad(D).subs(O, P)
        if dist:
            # sum_v pi(v) c(v) s(v): the per-entry coefficient is the derivative divided by pi(v)
            C = C * sp.exp(-P)
    elif pl.kind == M.IN_REWARD:
        out["coefficient_of"] = "value"
        if dist:
            notes.append("the exact per-state KL in the reward is a state function: it gives token t itself "
                         "no gradient; earlier tokens receive it through their returns")
            out["coefficient"] = d.reward_coefficient
            out["minimizes"] = "reverse KL(pi || pi_ref) of later states only (through returns)"
            return out
        C = S.clamp_to_minmax(S.strip_stopgrad(E).subs(O, P))
    C = C.subs(P, A + ell)
    if _small(C) and not C.has(sp.Piecewise):
        C = sp.simplify(C)
    C = sp.Integer(pl.sign) * C
    others = {s for s in C.free_symbols if s != ell}
    out["coefficient_ell"] = pr(C)
    if others:
        out["coefficient"] = pr(_to_delta(sp, S, C))
        notes.append("the coefficient depends on " + ", ".join(sorted(str(s) for s in others))
                     + ": not a function of delta alone, so no agreement, limits or target are derived")
        return out
    # ------------------------------------------------------------------ scale matching
    fn = _lambdify(sp, S, C, ell)
    vals = [fn(e) for e in _grid()]
    fam_name, a, b = "", 0.0, 0.0
    if fn is not None and all(v is not None for v in vals):
        templates = {k: v[0] for k, v in F.COEFFICIENTS.items()}
        m = F.match(vals, _grid(), templates, with_constant=True, tol=1e-7)
        if m is not None and m[0] != "zero":
            fam_name, a, b = m[0], m[1], (0.0 if m[0] == "const" else m[2])
        elif m is not None:
            fam_name = "zero"
    out["family"] = fam_name
    analyzer = d.loss_family if pl.kind == M.AS_LOSS else d.reward_family
    if fam_name and analyzer not in ("", "unknown", "fkl", "state_function") and analyzer != fam_name:
        notes.append(f"the analyzer matched the coefficient family {analyzer!r}, this explanation {fam_name!r}")
    if fam_name == "zero":
        out.update(coefficient="0", agreement="none", minimizes="nothing (no gradient reaches the policy)")
        return out
    if not fam_name:
        slope = _slope_at_zero(sp, S, C, ell)
        a = slope if slope else 1.0
    scale = abs(a) if a else 1.0
    out["scale"] = _tidy(scale)
    out["baseline"] = _tidy(b / scale)
    Cn = C / _rational(sp, scale)
    base_n = _rational(sp, b / scale)
    # ------------------------------------------------------------------ c(delta)
    smooth_text = not any(C.has(f) for f in (sp.Piecewise, S.Clamp, sp.Min, sp.Max, sp.sign, sp.Abs))
    if smooth_text:
        out["coefficient"] = pr(_to_delta(sp, S, C))
    elif fam_name:
        t = F.COEFFICIENTS[fam_name][1]
        clamped = any(C.has(f) for f in (sp.Piecewise, S.Clamp, sp.Min, sp.Max))
        out["coefficient"] = (t if scale == 1 and a > 0 else f"{'-' if a < 0 else ''}{_tidy(scale)}*({t})") + \
            (" where no clamp is active" if clamped else "")
    else:
        out["coefficient"] = pr(_to_delta(sp, S, C))
    if dist and fam_name:
        notes.append("an exact sum over the vocabulary: sum_v pi(v) c(v) grad log pi(v), no sampling noise")
    # ------------------------------------------------------------------ Taylor agreement at delta = 1
    try:
        local = _local_at_zero(sp, S, Cn, ell)
        target = local - base_n if fam_name and fam_name != "const" else local
        diff = sp.simplify(target - ell)
        out["series"] = pr(sp.series(local, ell, 0, 5))
        if diff == 0:
            out.update(agreement="exact", taylor_exact=True)
            if base_n != 0:
                notes.append(f"c carries a constant {pr(base_n)}: a zero-mean baseline on-policy (E_pi[grad log pi] = 0)")
        else:
            poly = sp.series(diff, ell, 0, 8).removeO()
            k = None
            for n in range(8):
                coef = poly.coeff(ell, n) if n else poly.subs(ell, 0)
                if sp.simplify(coef) != 0:
                    k = n
                    break
            if k is None:
                out.update(agreement="order 7 or more", taylor_order=7)
            else:
                out["first_difference"] = pr(sp.series(diff, ell, 0, k + 1))
                out["taylor_order"] = k - 1 if k > 0 else None
                out["agreement"] = f"order {k - 1}" if k > 0 else "none"
                if k == 1 and sp.simplify(poly.coeff(ell, 1) + 2) == 0:
                    notes.append("the first-order term has the opposite sign: the term ascends the KL near pi_ref")
    except _NotSmooth:
        out["agreement"] = "none"
        notes.append("c is not smooth at delta = 1 (a kink): no Taylor expansion there")
    except Exception as exc:  # sympy could not expand it
        notes.append(f"no Taylor expansion ({type(exc).__name__})")
    # ------------------------------------------------------------------ limits
    out["limits"] = (_limit(sp, S, Cn, ell, sp.oo, "0"), _limit(sp, S, Cn, ell, -sp.oo, "inf"))
    # ------------------------------------------------------------------ what it minimises
    out["minimizes"] = _target(F, fam_name, pl.kind, dist, a)
    if smooth_text:
        g = _generator(sp, Cn, ell)
        if g:
            out["generator"] = g
    if C.has(sp.Piecewise) or C.has(S.Clamp):
        out["minimizes"] += ", except where a clamp zeroes the gradient"
    # ------------------------------------------------------------------ off-policy
    out["off_policy"] = _off_policy(sp, S, F, term, D, P, O, A, ell, pr, dist)
    # ------------------------------------------------------------------ clamps
    if pl.kind == M.AS_LOSS and d.loss_zero_ranges:
        out["zero_gradient"] = tuple(_extend(sp, S, C, ell, lo, hi) for lo, hi in d.loss_zero_ranges)
    if pl.kind == M.IN_REWARD and sp.simplify(S.strip_stopgrad(D)) != 0:
        notes.append(f"the reward value is not detached (dE/d{P} = {pr(S.strip_stopgrad(D))}): wherever the reward is "
                     "differentiated, that derivative adds to the coefficient above (`klaudit rule KL301`)")
    if pl.kind == M.IN_REWARD and d.has_clamp:
        notes.append("a clamp on the reward value saturates the penalty (biases the reward), it zeroes no gradient")
    return out


def _lifted(sp, S, term: M.KLTerm, notes: list):
    """The term's expression in sympy: its lifted core, or, when the core is not the expression its
    derivation was made from (a helper's branch carrying its call site's default core), the derivation's
    own expression read back."""
    from .derive.canonical import canonical

    d = term.derivation
    if not d.key or canonical(term.core) == d.key or not d.expression:
        E, lifter = S.lift(term.core)
        notes.extend(lifter.notes)
        return E
    return _parse_expression(sp, S, d.expression)


def _parse_expression(sp, S, text: str):
    """Read back an expression printed by the derivation (``sg``/``clamp`` for StopGrad/Clamp)."""
    import re

    names = {"sg": S.StopGrad, "clamp": S.Clamp, "exp": sp.exp, "log": sp.log, "Abs": sp.Abs, "sign": sp.sign,
             "Min": sp.Min, "Max": sp.Max, "oo": sp.oo}
    known = {s.name: s for s in (S.LOGP, S.REF, S.OLD, S.TEACHER, S.DIST_P, S.DIST_R, S.DIST_O, S.DIST_T)}
    for ident in set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", text)):
        if ident in names:
            continue
        if ident in known:
            names[ident] = known[ident]
        elif re.match(r"^(logp|ref|old|teacher)_\d+$", ident) or ident.startswith("u_"):
            names[ident] = sp.Symbol(ident, real=True)
        elif ident.startswith(("scale_", "cfg_")):
            names[ident] = sp.Symbol(ident, positive=True)
    try:
        return sp.sympify(text, locals=names)
    except Exception:
        return None


def _off_policy(sp, S, F, term, D, P, O, A, ell, pr, dist) -> str:
    d, pl = term.derivation, term.placement
    if pl.kind == M.IN_REWARD:
        return ("in the reward, the policy-gradient surrogate carries the importance weight (the PPO ratio) "
                "when samples come from pi_old")
    if pl.kind != M.AS_LOSS or dist:
        return "" if not dist else "exact over the vocabulary at each visited state; the states still come from the rollout"
    if d.is_weight in ("differentiable", "detached"):
        w = sp.exp(P - O)
        g = sp.simplify((S.strip_stopgrad(D) / w).subs(P, A + ell))
        if g.free_symbols <= {ell}:
            fn = _lambdify(sp, S, g, ell)
            vals = [fn(e) for e in _grid()] if fn else None
            m = None
            if vals and all(v is not None for v in vals):
                m = F.match(vals, _grid(), {k: v[0] for k, v in F.COEFFICIENTS.items()}, with_constant=True, tol=1e-7)
            kind = "a differentiable" if d.is_weight == "differentiable" else "a detached"
            target = _target(F, m[0], M.AS_LOSS, False, m[1]) if m else "no named divergence"
            return (f"with {kind} importance weight w = pi/pi_old, off-policy (x ~ pi_old) the coefficient is "
                    f"w * ({pr(_to_delta(sp, S, g))}), so E_mu[c s] = E_pi[({pr(_to_delta(sp, S, g))}) s]: "
                    f"in expectation it targets {target} off-policy too")
        return f"with an importance weight ({d.is_weight}); the off-policy coefficient depends on more than delta"
    return ("on-policy only: with samples from pi_old (PPO epochs after the first, stale or rollout-engine "
            "log-probs) the expected gradient is E_mu[c s], neither KL, unless an importance weight pi/pi_old "
            "multiplies the term (`klaudit rule KL105`)")


# ------------------------------------------------------------------------------------- helpers


def _target(F, fam_name: str, placement: str, exact: bool, a: float) -> str:
    """What a coefficient family minimises in expectation (THEORY.md 1.3), with the sign of its scale."""
    if fam_name == "ell_one_plus_half_ell" and placement == M.AS_LOSS:
        name = "E_pi[ell**2/2], the expectation of k2 itself (not a KL)"
    else:
        fam = F.family_for(fam_name, placement, exact=exact) if fam_name else None
        if fam is None:
            return "no named divergence: see the generator g"
        name = fam.minimizes
    if a < 0 and fam_name != "const":
        return f"the negative of {name}: it ascends it (wrong sign)"
    return name


def _grid():
    from .derive.coefficient import GRID

    return GRID


def _small(e) -> bool:
    return e.count_ops() < 60


def _rational(sp, x: float):
    return sp.nsimplify(x, rational=True, tolerance=1e-9) if math.isfinite(x) else sp.Float(x)


def _tidy(x: float) -> float:
    r = round(x, 9)
    return float(int(r)) if float(r).is_integer() else r


def _to_delta(sp, S, C):
    e = C.subs(S.ELL, -sp.log(S.DELTA))
    try:
        return sp.simplify(e) if _small(e) else e
    except Exception:
        return e


def _lambdify(sp, S, C, ell, big: bool = False):
    """c as a plain function of ell (None where it cannot be evaluated); mpmath when ``big`` (far-out
    values where exp overflows floats)."""
    def clamp(x, lo, hi):
        return min(max(x, lo), hi)

    ns = {"Clamp": clamp, "StopGrad": lambda x: x, "Min": min, "Max": max,
          "sign": lambda x: (x > 0) - (x < 0)}
    try:
        f = sp.lambdify(ell, S.strip_stopgrad(C), modules=[ns, "mpmath" if big else "math"])
    except Exception:
        return None

    def call(e):
        try:
            v = float(f(e))
        except (OverflowError, ZeroDivisionError):
            return None
        except Exception:
            return None
        return v if math.isfinite(v) else None

    def call_big(e):
        import mpmath

        try:
            v = f(mpmath.mpf(e))
            return complex(v).real if not isinstance(v, (int, float)) else float(v)
        except Exception:
            return None

    return call_big if big else call


def _slope_at_zero(sp, S, C, ell) -> float:
    try:
        s = sp.diff(_local_at_zero(sp, S, C, ell), ell).subs(ell, 0)
        s = float(s)
        return s if math.isfinite(s) and abs(s) > 1e-12 else 0.0
    except Exception:
        return 0.0


def _local_at_zero(sp, S, e, ell):
    """``e`` as it is on a neighbourhood of ell = 0: inactive clamps become the identity, saturated ones
    their bound, piecewise expressions their branch there.  Raises _NotSmooth at a kink."""
    def value(x, at=0.0):
        return float(S.clamp_to_minmax(x).subs(ell, at).evalf())

    def truth(cond):
        vals = set()
        for at in (0, sp.Rational(1, 10 ** 7), -sp.Rational(1, 10 ** 7)):
            c = S.clamp_to_minmax(cond).subs(ell, at)
            c = sp.simplify(c) if not isinstance(c, (bool, sp.logic.boolalg.BooleanAtom)) else c
            if c not in (sp.true, sp.false, True, False):
                raise _NotSmooth()
            vals.add(bool(c))
        if len(vals) > 1:
            raise _NotSmooth()
        return vals.pop()

    def go(x):
        if isinstance(x, sp.Piecewise):
            for expr, cond in x.args:
                if truth(cond):
                    return go(expr)
            raise _NotSmooth()
        if isinstance(x, S.Clamp):
            inner, lo, hi = x.args
            x0 = value(inner)
            if float(lo) < x0 < float(hi):
                return go(inner)
            if x0 < float(lo):
                return lo
            if x0 > float(hi):
                return hi
            raise _NotSmooth()
        if isinstance(x, (sp.Min, sp.Max)):
            vals = [value(a) for a in x.args]
            pick = min(vals) if isinstance(x, sp.Min) else max(vals)
            if sum(1 for v in vals if abs(v - pick) < 1e-12) > 1:
                raise _NotSmooth()
            return go(x.args[vals.index(pick)])
        if isinstance(x, (sp.sign, sp.Abs)):
            x0 = value(x.args[0])
            if abs(x0) < 1e-12:
                raise _NotSmooth()
            s = 1 if x0 > 0 else -1
            return sp.Integer(s) if isinstance(x, sp.sign) else s * go(x.args[0])
        if isinstance(x, S.StopGrad):
            return go(x.args[0])
        if not x.args or x.is_Atom:
            return x
        return x.func(*[go(a) for a in x.args])

    return go(e)


def _limit(sp, S, Cn, ell, ell_to, delta_to: str) -> Limit:
    """Limit of the scale-matched coefficient and of -log(delta) as delta -> 0 (ell -> +oo) or
    delta -> oo (ell -> -oo)."""
    principled = _limit_text(sp.limit(-sp.log(S.DELTA), S.DELTA, 0, "+") if delta_to == "0"
                             else sp.limit(-sp.log(S.DELTA), S.DELTA, sp.oo))
    plain = not (Cn.has(sp.Piecewise) or Cn.has(S.Clamp) or Cn.has(sp.Min) or Cn.has(sp.Max) or Cn.has(sp.sign))
    if plain:
        try:
            lim = sp.limit(Cn, ell, ell_to)
            if lim.is_real or lim in (sp.oo, -sp.oo):
                return Limit(delta_to, _limit_text(lim), principled)
        except Exception:
            pass
    return Limit(delta_to, _numeric_limit(sp, S, Cn, ell, 1 if ell_to == sp.oo else -1), principled, how="numeric")


def _limit_text(lim) -> str:
    import sympy as sp

    if lim == sp.oo:
        return "+inf"
    if lim == -sp.oo:
        return "-inf"
    if lim.is_real:
        return str(lim)
    return "undefined"


def _numeric_limit(sp, S, C, ell, direction: int) -> str:
    """The limit read from values far out (for clamped or piecewise coefficients)."""
    f = _lambdify(sp, S, C, ell, big=True)
    if f is None:
        return "undefined"
    xs = [direction * 10.0 ** k for k in (2, 3, 4, 5)]
    vs = [f(x) for x in xs]
    if any(v is None for v in vs):
        return "undefined"
    if all(abs(v) < 1e-12 for v in vs[1:]):
        return "0"
    if all(abs(vs[i + 1] - vs[i]) <= 1e-9 * max(1.0, abs(vs[i])) for i in range(1, len(vs) - 1)):
        return str(sp.nsimplify(vs[-1], rational=True, tolerance=1e-9))
    if all(abs(vs[i + 1]) > 2 * abs(vs[i]) for i in range(len(vs) - 1)) and len({v > 0 for v in vs}) == 1:
        return "+inf" if vs[-1] > 0 else "-inf"
    return "undefined"


def _generator(sp, Cn, ell) -> str:
    """g(u) = int_1^u c(log t) dt: a per-sample coefficient c(ell) is, on-policy, the gradient of
    E_{pi_ref}[g(pi/pi_ref)] (THEORY.md 1.3)."""
    from .derive import notation

    t, u = sp.symbols("t u", positive=True)
    try:
        g = sp.integrate(sp.expand_log(Cn.subs(ell, sp.log(t)), force=True), (t, 1, u))
        if g.has(sp.Integral):
            return ""
        return notation.printer()(sp.expand_log(sp.expand(sp.simplify(g)), force=True))
    except Exception:
        return ""


def _extend(sp, S, C, ell, lo: float, hi: float) -> ZeroRange:
    """A zero-gradient interval from the analyzer's grid (ell in [-15, 15]), with an edge at the grid's
    end widened to infinity when the coefficient stays exactly zero far beyond it."""
    from .derive.coefficient import WIDE

    f = _lambdify(sp, S, C, ell, big=True)

    def zero_beyond(sign: int) -> bool:
        if f is None:
            return False
        vals = [f(sign * x) for x in (20.5, 30.0, 100.0, 1000.0)]
        return all(v is not None and abs(v) < 1e-12 for v in vals)

    if lo <= WIDE[0] and zero_beyond(-1):
        lo = -math.inf
    if hi >= WIDE[-1] and zero_beyond(1):
        hi = math.inf
    return ZeroRange(lo, hi)


def _exp_neg(x: float) -> float:
    if x == math.inf:
        return 0.0
    if x == -math.inf:
        return math.inf
    try:
        return math.exp(-x)
    except OverflowError:
        return math.inf


def _json_num(x: float):
    if x == math.inf:
        return "+inf"
    if x == -math.inf:
        return "-inf"
    return x
