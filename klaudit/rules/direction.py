"""KL2xx: sign, direction and accounting (THEORY.md sections 1.3, 6: P11-P13)."""
from __future__ import annotations

from typing import Iterable

from ..model import AS_LOSS, IN_REWARD, KLTerm, effective_sign
from .base import Hit, Project, penalises_reference
from .helpers_text import ctx as _ctx


def sign_error(t: KLTerm, p: Project) -> Iterable[Hit]:
    d = t.derivation
    pl = t.placement.kind
    if pl not in (AS_LOSS, IN_REWARD) or not penalises_reference(t):
        return
    fam = d.loss_family if pl == AS_LOSS else d.reward_family
    if fam not in ("ell", "const", "one_minus_delta", "half_ell_sq", "k3_value", "abs_ell", "sign"):
        return
    if d.kind not in ("estimator", "surrogate", "full"):
        return
    if effective_sign(d, pl, t.placement.sign) < 0:
        where = "added to the reward" if pl == IN_REWARD else "subtracted from the loss"
        coef = _negated((d.reward_coefficient if pl == IN_REWARD else d.loss_coefficient) or "c")
        yield Hit(
            f"the KL penalty is {where} with the wrong sign (or its log-ratio is written ref - logp): the "
            f"effective coefficient is {coef} instead of -log(delta), so the gradient ascends the divergence "
            "and drives the policy away from the reference. "
            f"Use reward -= beta * KL or loss += beta * KL with KL = logp - ref_logp{_ctx(t)}."
        )


def _negated(coef: str) -> str:
    """The coefficient a penalty with the wrong sign applies: -c, written simply."""
    if coef == "-log(delta)":
        return "+log(delta)"
    if coef == "1":
        return "-1"
    return f"-({coef})"


def forward_kl(t: KLTerm, p: Project) -> Iterable[Hit]:
    d = t.derivation
    if not t.reachable:
        return
    if d.estimator == "k3_inverted":
        sampler = "pi_old" if d.anchor == "old" else "pi"
        yield Hit(
            f"k3 written with the ratio inverted, exp(logp - ref) - 1 - (logp - ref): under samples from "
            f"{sampler} it estimates chi^2 - KL, not KL (they agree only to second order), and as a loss its "
            "coefficient is 1/delta - 1 instead of -log(delta), whose expectation is half "
            "the chi-square gradient. Use delta = exp(ref - logp): "
            f"delta - 1 - log(delta){_ctx(t)}."
        )


def double_count(t: KLTerm, p: Project) -> Iterable[Hit]:
    d = t.derivation
    if t.placement.kind != AS_LOSS or not penalises_reference(t) or t.callers:
        return
    for o in p.in_function(t.function):
        # both placed in this very function (a helper's branches reached by different callers are
        # alternatives, not a double count)
        if o is t or o.callers or o.placement.kind != IN_REWARD or o.derivation.anchor != d.anchor:
            continue
        od = o.derivation
        rl = od.reward_family, d.loss_family
        if rl == ("ell", "ell"):
            yield Hit(
                f"the KL is applied twice: k1 in the reward (line {o.loc.line}) and a loss with the same "
                "reverse-KL gradient here: the combined coefficient is 2 * (-log(delta)), i.e. beta is doubled. "
                f"Keep one of the two, or halve beta{_ctx(t)}."
            )
            return
        if rl not in (("k3_value", "one_minus_delta"),) and od.reward_family != "unknown" and \
                d.loss_family != "unknown":
            yield Hit(
                f"the KL is applied twice: in the reward (line {o.loc.line}, coefficient {od.reward_coefficient}) "
                f"and as a loss here (coefficient {d.loss_coefficient}); their sum is not the reverse-KL "
                f"coefficient -log(delta). Keep k1 in the reward or k2 as the loss, not both{_ctx(t)}."
            )
            return
