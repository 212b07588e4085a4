"""The coefficient families shared by the static analyzer and the probe (no torch needed)."""
import math

import pytest

from klaudit.derive import families as F


def test_every_family_has_a_template_that_reproduces_its_coefficient():
    for fam in F.FAMILIES:
        tpl = F.COEFFICIENTS[F.FAMILY_TEMPLATES[fam.name]][0]
        for e in (-2.0, -0.3, 0.4, 1.7):
            assert tpl(e) == pytest.approx(fam.fn(e), rel=1e-12), fam.name
    for fam in F.EXACT_FAMILIES:
        tpl = F.COEFFICIENTS[F.EXACT_TEMPLATES[fam.name]][0]
        assert tpl(0.7) == pytest.approx(fam.fn(0.7))


def test_family_for_round_trips():
    for fam in F.FAMILIES:
        assert F.family_for(F.FAMILY_TEMPLATES[fam.name], fam.placement) is fam
    assert F.family_for("ell", "as_loss", exact=True).name == "full_loss"
    assert F.family_for("ell_one_plus_half_ell", "as_loss") is None
    assert F.BY_NAME["full_loss"].principled and not F.BY_NAME["full_forward_loss"].principled
    # principled families are exactly those with coefficient ell
    assert {f.name for f in F.FAMILIES if f.principled} == {
        f.name for f in F.FAMILIES if F.FAMILY_TEMPLATES[f.name] == F.PRINCIPLED}


def test_slopes_at_delta_one_match_the_templates():
    h = 1e-6
    for name, slope in F.SLOPES_AT_DELTA_ONE.items():
        f = F.COEFFICIENTS[name][0]
        left, right = (f(0) - f(-h)) / h, (f(h) - f(0)) / h
        if slope is None:  # a kink: the one-sided slopes differ
            assert abs(left - right) > 0.5 or math.isinf(left) or abs(right) > 1e3, name
        else:
            assert (left + right) / 2 == pytest.approx(slope, abs=1e-5), name
    assert set(F.SLOPES_AT_DELTA_ONE) == set(F.COEFFICIENTS)


def test_rank_orders_templates_by_residual():
    ells = [x / 4 for x in range(-12, 13)]
    values = [0.3 * (1 - math.exp(-e)) + 0.1 for e in ells]
    ranking = F.rank(values, ells, {k: v[0] for k, v in F.COEFFICIENTS.items()})
    name, a, b, res = ranking[0]
    assert name == "one_minus_delta" and a == pytest.approx(0.3) and b == pytest.approx(0.1) and res < 1e-12
    assert [r[3] for r in ranking] == sorted(r[3] for r in ranking)
    assert ranking[1][3] > 1e-3
