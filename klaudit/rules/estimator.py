"""KL1xx: which estimator, differentiated how, gives which gradient (THEORY.md sections 1.2-1.5)."""
from __future__ import annotations

from typing import Iterable

from ..model import AS_LOSS, IN_REWARD, KLTerm, effective_sign
from .base import Hit, Project, conditional_text, confidence_text, default_variant_text, penalises_reference


def _ctx(t: KLTerm) -> str:
    return default_variant_text(t) + conditional_text(t) + confidence_text(t)


def _use(t: KLTerm) -> str:
    if t.placement.loc is not None and t.placement.loc.line != t.loc.line:
        return f" (added to the loss at line {t.placement.loc.line})"
    return ""


def k1_as_loss(t: KLTerm, p: Project) -> Iterable[Hit]:
    d = t.derivation
    if t.placement.kind != AS_LOSS or not penalises_reference(t):
        return
    if d.loss_family == "const" and effective_sign(d, AS_LOSS, t.placement.sign) > 0 and not d.grad_free:
        yield Hit(
            "k1 estimator (log pi - log pi_ref) differentiated as a loss: its gradient coefficient is the "
            "constant 1, so the expected gradient is zero and nothing pulls the policy toward the reference "
            f"(principled coefficient: -log(delta)){_use(t)}. Put k1 in the reward (detached), or use "
            f"k2 = 0.5 * (logp - ref_logp)**2 as the loss{_ctx(t)}."
        )


def k3_as_loss(t: KLTerm, p: Project) -> Iterable[Hit]:
    d = t.derivation
    if t.placement.kind != AS_LOSS or not penalises_reference(t):
        return
    if d.loss_family == "one_minus_delta" and effective_sign(d, AS_LOSS, t.placement.sign) > 0:
        yield Hit(
            "k3 estimator differentiated as a loss: gradient coefficient 1 - delta (delta = pi_ref/pi) instead of "
            "-log(delta); they agree only to first order, on-policy its expectation is the forward-KL gradient "
            "KL(pi_ref || pi), it saturates at 1 as delta -> 0 and grows without bound as delta -> infinity"
            f"{_use(t)}. Use k2 = 0.5 * (logp - ref_logp)**2 as the loss, weight k3 by the differentiable "
            f"ratio exp(logp - logp.detach()), or put k1 in the reward{_ctx(t)}."
        )


def non_k1_in_reward(t: KLTerm, p: Project) -> Iterable[Hit]:
    d = t.derivation
    if t.placement.kind != IN_REWARD or not penalises_reference(t):
        return
    if effective_sign(d, IN_REWARD, t.placement.sign) <= 0:
        return
    names = {"half_ell_sq": ("k2", "log(delta)**2 / 2", "E[k2] - KL(pi || pi_ref)"),
             "k3_value": ("k3", "delta - 1 - log(delta)", "KL(pi || pi_ref) - KL(pi_ref || pi)"),
             "abs_ell": ("abs", "|log(delta)|", "E|log ratio| - 2 TV(pi, pi_ref)")}
    if d.reward_family in names:
        est, coef, target = names[d.reward_family]
        where = f" (the reward is formed at line {t.placement.loc.line})" if t.placement.loc and \
            t.placement.loc.line != t.loc.line else ""
        yield Hit(
            f"{est} estimator subtracted from the reward: the reward coefficient is {coef}, not -log(delta); it "
            f"has no first-order term, so near pi_ref there is no restoring force, and the term targets {target}"
            f"{where}. Put k1 = logp - ref_logp in the reward (detached), or move {est} to the loss as k2"
            f"{_ctx(t)}."
        )
