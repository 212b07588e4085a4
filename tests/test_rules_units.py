"""Rules as plain functions on hand-built terms: no parsing.

Each case builds the core IR of one KL term (``klaudit.ir``), derives it with the symbolic layer,
wraps it in a ``KLTerm`` with the placement and the facts the analyzer would have found, and calls
the rule's check function.  Positives also check the message: the derived coefficient, the principled
one (-log(delta)) where it is meaningful, and a sentence that says what to do.
"""
import re

import pytest

from klaudit import ir
from klaudit.derive.coefficient import derive
from klaudit.model import AS_LOSS, IN_REWARD, METRIC, KLTerm, Placement
from klaudit.rules.base import Project
from klaudit.rules.registry import BY_CODE, RULES

C = ir.Const
P = ir.Leaf(ir.POLICY, "logp")
R = ir.Leaf(ir.REF, "ref_logp")
O = ir.Leaf(ir.OLD, "old_logp")


def k1(p=P, r=R):
    return ir.sub(p, r)


def k2(p=P, r=R):
    return ir.mul(C(0.5), ir.op("pow", ir.sub(p, r), C(2.0)))


def k3(p=P, r=R):
    lr = ir.sub(r, p)  # log(delta)
    return ir.add(ir.op("exp", lr), ir.neg(lr), C(-1.0))


def k3_inverted(p=P, r=R):
    lr = ir.sub(p, r)
    return ir.add(ir.op("exp", lr), ir.neg(lr), C(-1.0))


def absk(p=P, r=R):
    return ir.op("abs", ir.sub(p, r))


def ratio():
    return ir.op("exp", ir.sub(P, O))


def straight_through(value, grad_part=None):
    b = grad_part if grad_part is not None else k2()
    return ir.add(b, ir.neg(ir.sg(b)), ir.sg(value))


def clamp(x, lo, hi):
    return ir.op("clamp", x, C(lo), C(hi))


def verl_k3():
    lr = clamp(ir.sub(R, P), -20.0, 20.0)
    return clamp(ir.add(ir.op("exp", lr), ir.neg(lr), C(-1.0)), -10.0, 10.0)


def term(core, placement=AS_LOSS, sign=1, line=10, function="train.step", **facts):
    loc = ir.Loc("train.py", line, 5, line, 40)
    return KLTerm(loc=loc, function=function, stmt=(line, line), derivation=derive(core),
                  placement=Placement(placement, loc, sign, "", ""), core=core, **facts)


def hits(code, t, *others):
    return list(BY_CODE[code].check(t, Project([t, *others])))


FIX = re.compile(r"(^|[.;] )(Use|Put|Multiply|Compute|Drop|Build|Keep|Clip|Fix|Sum|Move|Weight)\b")


def check_message(msg, coefficient, principled=True):
    assert coefficient in msg, f"derived coefficient {coefficient!r} missing: {msg}"
    if principled:
        assert "-log(delta)" in msg, f"principled coefficient missing: {msg}"
    assert FIX.search(msg), f"no fix sentence: {msg}"


# ------------------------------------------------------------------------------------ positives
# code, term, other terms of the project, coefficient text the message must carry, principled shown?
POSITIVES = [
    ("KL101", lambda: term(k1()), (), "constant 1", True),
    ("KL102", lambda: term(k3()), (), "1 - delta", True),
    ("KL103", lambda: term(k3(O), IN_REWARD), (), "delta - 1 - log(delta)", True),
    ("KL103", lambda: term(k2(O), IN_REWARD), (), "log(delta)**2 / 2", True),
    ("KL104", lambda: term(absk()), (), "sign(-log(delta))", True),
    ("KL105", lambda: term(k2(), context=("old_logp", "ppo_ratio")), (), "-log(delta)", True),
    ("KL105", lambda: term(k3(), context=("ppo_ratio",)), (), "1 - delta", True),
    ("KL106", lambda: term(k2(O)), (), "coefficient is 0", True),
    ("KL106", lambda: term(ir.sg(k3())), (), "coefficient is 0", True),
    ("KL107", lambda: term(ir.mul(ir.sg(ratio()), k3())), (), "w * (1 - delta)", True),
    ("KL107", lambda: term(ir.mul(ratio(), k2())), (), "w * (-log(delta)) * (1 - log(delta)/2)", True),
    ("KL108", lambda: term(k2()), (), "coefficient -log(delta)", True),
    ("KL108", lambda: term(k3()), (), "coefficient 1 - delta", True),
    ("KL109", lambda: term(straight_through(k3()), IN_REWARD), (), "delta - 1 - log(delta)", True),
    ("KL109", lambda: term(straight_through(k3(O)), st_mismatch=True), (), "-log(delta)", False),
    ("KL201", lambda: term(k1(O), IN_REWARD, sign=-1), (), "+log(delta)", True),
    ("KL201", lambda: term(k2(), AS_LOSS, sign=-1), (), "+log(delta)", True),
    ("KL201", lambda: term(ir.sub(R, O), IN_REWARD), (), "+log(delta)", True),
    ("KL201", lambda: term(k3(), AS_LOSS, sign=-1), (), "-(1 - delta)", True),
    ("KL202", lambda: term(k3_inverted()), (), "1/delta - 1", True),
    ("KL202", lambda: term(ir.sg(k3_inverted()), METRIC), (), "1/delta - 1", True),
    ("KL203", lambda: term(k2(), line=20), (term(k1(O), IN_REWARD, line=12),), "2 * (-log(delta))", True),
    ("KL203", lambda: term(k3(), line=20), (term(k1(O), IN_REWARD, line=12),), "1 - delta", True),
    ("KL301", lambda: term(k1(), IN_REWARD, live_grad=(ir.POLICY,)), (), "extra log pi", False),
    ("KL302", lambda: term(k2(), live_grad=(ir.POLICY, ir.REF)), (), "c = -log(delta)", False),
    ("KL401", lambda: term(clamp(k2(), -10.0, 10.0)), (), "4.472", True),
    ("KL401", lambda: term(verl_k3()), (), "-2.611", True),
    ("KL501", lambda: term(k2(), agg="mean", context=("mask",)), (), "-log(delta)", False),
    ("KL501", lambda: term(k1(O), IN_REWARD, agg="sum", context=("mask",)), (), "-log(delta)", False),
    ("KL502", lambda: term(k2(), agg="token-mean", masked=True), (), "coefficient -log(delta)", False),
    ("KL901", lambda: term(straight_through(k3()), reachable=False), (), "-log(delta)", False),
]


@pytest.mark.parametrize("code, make, others, coefficient, principled", POSITIVES,
                         ids=[f"{p[0]}-{i}" for i, p in enumerate(POSITIVES)])
def test_rule_fires_with_a_message_that_carries_the_numbers(code, make, others, coefficient, principled):
    t = make()
    hs = hits(code, t, *others)
    assert len(hs) == 1, (code, t.derivation)
    check_message(hs[0].message, coefficient, principled)


# ------------------------------------------------------------------------------------ negatives
NEGATIVES = [
    # KL101: k1 in the reward (principled), k2 as a loss
    ("KL101", lambda: term(k1(O), IN_REWARD), ()),
    ("KL101", lambda: term(k2()), ()),
    # KL102: k3 times the differentiable ratio; k3 in the reward and as a loss together (exact)
    ("KL102", lambda: term(ir.mul(ratio(), k3())), ()),
    ("KL102", lambda: term(k3(), line=20), (term(k3(O), IN_REWARD, line=12),)),
    # KL103: k1 in the reward; the exact pair seen from the reward side
    ("KL103", lambda: term(k1(O), IN_REWARD), ()),
    ("KL103", lambda: term(k3(O), IN_REWARD, line=12), (term(k3(), line=20),)),
    # KL104: abs only logged; k2 as a loss
    ("KL104", lambda: term(ir.sg(absk()), METRIC), ()),
    ("KL104", lambda: term(k2()), ()),
    # KL105: the two correct importance-weighted forms; no PPO ratio in the function
    ("KL105", lambda: term(ir.mul(ir.sg(ratio()), k2()), context=("old_logp", "ppo_ratio")), ()),
    ("KL105", lambda: term(ir.mul(ratio(), k3()), context=("old_logp", "ppo_ratio")), ()),
    ("KL105", lambda: term(k2()), ()),
    # KL106: the rollout-time KL in the reward; a live k2 loss
    ("KL106", lambda: term(k1(O), IN_REWARD), ()),
    ("KL106", lambda: term(k2()), ()),
    # KL107: the correct pairings
    ("KL107", lambda: term(ir.mul(ir.sg(ratio()), k2())), ()),
    ("KL107", lambda: term(ir.mul(ratio(), k3())), ()),
    # KL108: k1 in the reward; k1 as a loss (KL101's)
    ("KL108", lambda: term(k1(O), IN_REWARD), ()),
    ("KL108", lambda: term(k1()), ()),
    # KL109: straight-through as a loss on the same tensors; plain k3 in the reward
    ("KL109", lambda: term(straight_through(k3())), ()),
    ("KL109", lambda: term(k3(O), IN_REWARD), ()),
    # KL201: the right signs, including ref - logp added to the reward
    ("KL201", lambda: term(k1(O), IN_REWARD), ()),
    ("KL201", lambda: term(ir.sub(R, O), IN_REWARD, sign=-1), ()),
    ("KL201", lambda: term(k2()), ()),
    # KL202: the correct k3, also as a metric
    ("KL202", lambda: term(k3()), ()),
    ("KL202", lambda: term(ir.sg(k3()), METRIC), ()),
    # KL203: k3 in the reward and as a loss (exact); k1 in the reward of another function
    ("KL203", lambda: term(k3(), line=20), (term(k3(O), IN_REWARD, line=12),)),
    ("KL203", lambda: term(k2(), line=20), (term(k1(O), IN_REWARD, line=12, function="train.rollout"),)),
    # KL301: reward KL under no_grad; a live policy in a loss is what a loss needs
    ("KL301", lambda: term(k1(O), IN_REWARD), ()),
    ("KL301", lambda: term(k2(), live_grad=(ir.POLICY,)), ()),
    # KL302: only the policy is live
    ("KL302", lambda: term(k2(), live_grad=(ir.POLICY,)), ()),
    # KL401: clamp in the reward; a clamp whose dead zone is beyond |ell| = 12
    ("KL401", lambda: term(ir.sg(clamp(k1(O), -10.0, 10.0)), IN_REWARD), ()),
    ("KL401", lambda: term(clamp(k2(), -100.0, 100.0)), ()),
    # KL501: masked; no mask in the function
    ("KL501", lambda: term(k2(), agg="mean", masked=True, context=("mask",)), ()),
    ("KL501", lambda: term(k2(), agg="mean"), ()),
    # KL502: a token sum; a token-mean KL that is only logged
    ("KL502", lambda: term(k2(), agg="sum", masked=True)),
    ("KL502", lambda: term(ir.sg(k2()), METRIC, agg="token-mean")),
    # KL901: a reachable straight-through
    ("KL901", lambda: term(straight_through(k3())), ()),
]


@pytest.mark.parametrize("case", NEGATIVES, ids=[f"{n[0]}-{i}" for i, n in enumerate(NEGATIVES)])
def test_rule_stays_quiet(case):
    code, make = case[0], case[1]
    others = case[2] if len(case) > 2 else ()
    t = make()
    assert hits(code, t, *others) == [], (code, t.derivation)


def test_every_rule_has_a_unit_positive_and_negative():
    codes = {r.code for r in RULES}
    assert codes <= {p[0] for p in POSITIVES}
    assert codes <= {n[0] for n in NEGATIVES}


# ---------------------------------------------------------------------------- exact numbers

def test_clamp_ranges_are_the_theory_thresholds():
    (msg,) = [h.message for h in hits("KL401", term(clamp(k2(), -10.0, 10.0)))]
    assert "ell < -4.472 or ell > 4.472" in msg  # sqrt(20) = 4.4721
    (msg,) = [h.message for h in hits("KL401", term(verl_k3()))]
    assert "ell < -2.611 or ell > 11" in msg  # k3 = 10 at ell = -2.6109 and ell = 11.0


def test_double_count_reports_only_what_is_wrong():
    reward_k3 = term(k3(O), IN_REWARD, line=12)
    loss_k3 = term(k3(), line=20)
    project = [loss_k3, reward_k3]
    for code in ("KL102", "KL103", "KL203"):
        for t in project:
            assert list(BY_CODE[code].check(t, Project(project))) == [], code
    # the same k3 loss next to a k1 reward is both k3-as-loss and a double count
    reward_k1 = term(k1(O), IN_REWARD, line=12)
    assert len(hits("KL102", loss_k3, reward_k1)) == 1
    (msg,) = [h.message for h in hits("KL203", loss_k3, reward_k1)]
    assert "line 12" in msg and "-log(delta)" in msg and "1 - delta" in msg


def test_sign_error_uses_the_derived_sign_not_the_syntax():
    # rewards + beta * (ref - old) is rewards - beta * k1: correct
    assert hits("KL201", term(ir.sub(R, O), IN_REWARD, sign=-1)) == []
    # rewards - beta * (ref - old) is rewards + beta * k1: wrong
    assert len(hits("KL201", term(ir.sub(R, O), IN_REWARD, sign=1))) == 1


def test_penalties_toward_the_rollout_policy_are_not_reference_kl():
    # k3 of the ratio to pi_old (a trust-region statistic) as a loss: not a reference regulariser
    lw = ir.sub(P, O)
    trust = ir.add(ir.op("exp", lw), ir.neg(lw), C(-1.0))
    t = term(trust)
    for code in ("KL101", "KL102", "KL104", "KL105", "KL106", "KL108", "KL201", "KL202", "KL401"):
        assert hits(code, t) == [], code
