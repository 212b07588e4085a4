"""The symbolic layer against numbers: each derived coefficient, evaluated, must equal central finite
differences of the lifted expression (with stop-gradients held at the base point)."""
import glob
import math
import os

import pytest

from conftest import FIXTURES, run_paths
from klaudit import ir
from klaudit.derive import families as F
from klaudit.derive.coefficient import derive

H = 1e-5


def evaluate(e, lp, lp_base, ref, old, frozen=False):
    """Numeric value of an IR expression; inside sg(...) the policy log-prob stays at lp_base."""
    ev = lambda x, fr=frozen: evaluate(x, lp, lp_base, ref, old, fr)
    if isinstance(e, ir.Const):
        return e.value
    if isinstance(e, (ir.Scale,)):
        return 1.0
    if isinstance(e, ir.Ref):
        return 1.0
    if isinstance(e, ir.Leaf):
        if e.role == ir.POLICY:
            return lp_base if (frozen or e.grad is False) else lp
        if e.role == ir.REF:
            return ref
        if e.role == ir.OLD:
            return old
        if e.role == ir.MASK:
            return 1.0
        raise ValueError(e.role)
    if isinstance(e, ir.Via):
        return ev(e.expr)
    if isinstance(e, ir.Op):
        a = e.args
        if e.op == "add":
            return sum(ev(x) for x in a)
        if e.op == "mul":
            return math.prod(ev(x) for x in a)
        if e.op == "pow":
            return ev(a[0]) ** ev(a[1])
        if e.op == "exp":
            return math.exp(ev(a[0]))
        if e.op == "log":
            return math.log(ev(a[0]))
        if e.op == "abs":
            return abs(ev(a[0]))
        if e.op == "sign":
            v = ev(a[0])
            return (v > 0) - (v < 0)
        if e.op == "sg":
            return ev(a[0], True)
        if e.op in ("agg", "named"):
            return ev(a[-1])
        if e.op == "clamp":
            v = ev(a[0])
            lo = None if isinstance(a[1], ir.Lit) else ev(a[1])
            hi = None if isinstance(a[2], ir.Lit) else ev(a[2])
            if lo is not None:
                v = max(v, lo)
            if hi is not None:
                v = min(v, hi)
            return v
        if e.op == "max":
            return max(ev(a[0]), ev(a[1]))
        if e.op == "min":
            return min(ev(a[0]), ev(a[1]))
    raise ValueError(f"cannot evaluate {type(e).__name__} {getattr(e, 'op', '')}")


def fixture_terms():
    paths = sorted(glob.glob(os.path.join(FIXTURES, "textbook", "*.py")))
    report = run_paths(paths)
    out = []
    for t in report.terms:
        d = t.derivation
        if d.kind in ("estimator", "surrogate") and d.anchor == "ref" and d.loss_family in F.COEFFICIENTS:
            out.append(t)
    return out


TERMS = fixture_terms()


def test_there_are_terms_to_check():
    assert len(TERMS) >= 10


@pytest.mark.parametrize("term", TERMS, ids=lambda t: f"{os.path.basename(t.loc.path)}:{t.loc.line}")
def test_loss_coefficient_matches_finite_differences(term):
    d = derive(term.core)
    template = F.COEFFICIENTS[d.loss_family][0]
    ref = 0.3
    checked = 0
    for ell in (-1.7, -0.8, -0.25, 0.35, 0.9, 1.6):
        lp = ref + ell
        try:
            fd = (evaluate(term.core, lp + H, lp, ref, lp) - evaluate(term.core, lp - H, lp, ref, lp)) / (2 * H)
        except ValueError as e:
            pytest.skip(str(e))
        predicted = d.loss_scale * template(ell) + d.loss_offset
        assert fd == pytest.approx(predicted, rel=1e-5, abs=1e-7), (ell, d.expression)
        checked += 1
    assert checked == 6


@pytest.mark.parametrize("term", TERMS, ids=lambda t: f"{os.path.basename(t.loc.path)}:{t.loc.line}")
def test_value_matches_estimator_template(term):
    d = derive(term.core)
    if d.kind != "estimator":
        pytest.skip("gradient-only surrogate")
    template = F.VALUES[d.estimator]
    ref = -0.4
    for ell in (-1.5, -0.3, 0.2, 1.2):
        lp = ref + ell
        v = evaluate(term.core, lp, lp, ref, lp)
        assert v == pytest.approx(d.value_scale * template(ell) + d.value_offset, rel=1e-7, abs=1e-9)


def test_known_coefficients():
    lp = ir.Leaf(ir.POLICY, "lp", True)
    rf = ir.Leaf(ir.REF, "ref", False)
    old = ir.Leaf(ir.OLD, "old", False)
    ell = ir.sub(lp, rf)
    k3 = ir.add(ir.Op("exp", (ir.neg(ell),)), ell, ir.Const(-1))
    cases = [
        (ell, "const"), (ir.mul(ir.Const(0.5), ir.Op("pow", (ell, ir.Const(2)))), "ell"), (k3, "one_minus_delta"),
        (ir.Op("abs", (ell,)), "sign"),
        (ir.mul(ir.Op("exp", (ir.sub(lp, old),)), k3), "ell"),  # differentiable ratio times k3
        (ir.mul(ir.sg(ir.Op("exp", (ir.sub(lp, old),))), k3), "one_minus_delta"),  # detached ratio
        (ir.mul(ir.sg(ell), lp), "ell"),  # REINFORCE surrogate sg(ell) * logp
    ]
    for expr, fam in cases:
        assert derive(expr).loss_family == fam, (expr, derive(expr))


def test_numeric_precheck_never_rejects_a_constant_ratio():
    """The cheap test that skips ``simplify`` must say "maybe" for every true constant and "no" for
    ratios that vary, including through functions the analysis cannot see into."""
    import sympy as sp

    from klaudit.derive import symbolic as S
    from klaudit.derive.coefficient import _maybe_constant

    P, A = S.LOGP, S.REF
    rev = sp.exp(P) * (P - A)
    assert _maybe_constant(sp, (3 * sp.exp(P) * P - 3 * sp.exp(P) * A) / rev)
    assert _maybe_constant(sp, (sp.exp(P) * (P - S.StopGrad(A))) / rev)
    assert not _maybe_constant(sp, (sp.exp(A) * (A - P)) / rev)
    f = sp.Function("f_logsumexp")
    assert not _maybe_constant(sp, f(P) * (P - A) / rev)
    assert _maybe_constant(sp, 2 * f(P) / f(P))
    assert not _maybe_constant(sp, S.Clamp(P - A, -1, 1) / (P - A))
