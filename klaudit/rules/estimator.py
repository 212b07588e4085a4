"""KL1xx: which estimator, differentiated how, gives which gradient (THEORY.md sections 1.2-1.5, 3)."""
from __future__ import annotations

from typing import Iterable

from ..model import AS_LOSS, IN_REWARD, KLTerm, effective_sign
from .base import Hit, Project, penalises_reference
from .helpers_text import ctx as _ctx
from .helpers_text import use as _use


def _loss_term(t: KLTerm) -> bool:
    return t.placement.kind == AS_LOSS and penalises_reference(t) and \
        effective_sign(t.derivation, AS_LOSS, t.placement.sign) > 0


def _exact_pair(t: KLTerm, p: Project) -> bool:
    """k3 in the reward and k3 as a loss on the same tensors, same function: together the exact
    reverse-KL gradient (THEORY.md 1.3); each alone would be flagged, together they are right."""
    d = t.derivation
    mine = "one_minus_delta" if t.placement.kind == AS_LOSS else "k3_value"
    other_kind = IN_REWARD if t.placement.kind == AS_LOSS else AS_LOSS
    want = "k3_value" if other_kind == IN_REWARD else "one_minus_delta"
    if (d.loss_family if t.placement.kind == AS_LOSS else d.reward_family) != mine:
        return False
    if t.callers:
        return False
    for o in p.in_function(t.function):
        if o.callers:
            continue
        od = o.derivation
        fam = od.reward_family if other_kind == IN_REWARD else od.loss_family
        if o is not t and o.placement.kind == other_kind and fam == want and od.anchor == d.anchor:
            return True
    return False


def k1_as_loss(t: KLTerm, p: Project) -> Iterable[Hit]:
    d = t.derivation
    if not _loss_term(t) or d.grad_free:
        return
    if d.loss_family == "const":
        yield Hit(
            "k1 estimator (log pi - log pi_ref) differentiated as a loss: its gradient coefficient is the "
            "constant 1, so the expected gradient is zero and nothing pulls the policy toward the reference "
            f"(principled coefficient: -log(delta)){_use(t)}. Put k1 in the reward (detached), or use "
            f"k2 = 0.5 * (logp - ref_logp)**2 as the loss{_ctx(t)}."
        )


def k3_as_loss(t: KLTerm, p: Project) -> Iterable[Hit]:
    d = t.derivation
    if not _loss_term(t) or d.is_weight == "detached" or _exact_pair(t, p):
        return
    if d.loss_family == "one_minus_delta":
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
    if effective_sign(d, IN_REWARD, t.placement.sign) <= 0 or _exact_pair(t, p):
        return
    names = {"half_ell_sq": ("k2", "log(delta)**2 / 2", "E[k2] - KL(pi || pi_ref)"),
             "k3_value": ("k3", "delta - 1 - log(delta)", "KL(pi || pi_ref) - KL(pi_ref || pi)"),
             "abs_ell": ("abs", "|log(delta)|", "E|log ratio| - 2 TV(pi, pi_ref)")}
    if d.reward_family in names:
        est, coef, target = names[d.reward_family]
        yield Hit(
            f"{est} estimator subtracted from the reward: the reward coefficient is {coef}, not -log(delta); it "
            f"has no first-order term, so near pi_ref there is no restoring force, and the term targets {target}"
            f"{_use(t, 'reward')}. Put k1 = logp - ref_logp in the reward (detached), or "
            f"{'use k2 as the loss instead' if est == 'k2' else 'move the penalty to the loss as k2'}{_ctx(t)}."
        )


def abs_as_loss(t: KLTerm, p: Project) -> Iterable[Hit]:
    d = t.derivation
    if _loss_term(t) and d.loss_family == "sign":
        yield Hit(
            "|log pi - log pi_ref| differentiated as a loss: gradient coefficient sign(-log(delta)), a constant "
            "magnitude, instead of -log(delta); in expectation it is the gradient of 2 TV(pi, pi_ref), not of the "
            f"KL, and it chatters around pi = pi_ref{_use(t)}. Use k2 = 0.5 * (logp - ref_logp)**2 as the loss"
            f"{_ctx(t)}."
        )


def off_policy_without_is(t: KLTerm, p: Project) -> Iterable[Hit]:
    d = t.derivation
    if not _loss_term(t) or d.is_weight != "none" or d.grad_free:
        return
    if "ppo_ratio" not in t.context or d.loss_family not in ("ell", "one_minus_delta", "const", "sign"):
        return
    fix = ("multiply k2 by the detached ratio exp(logp - old_logp).detach()" if d.loss_family == "ell" else
           "multiply it by the differentiable ratio exp(logp - old_logp)")
    yield Hit(
        "KL term used as a loss in an update that reuses rollouts (the same loss computes the ratio "
        f"pi/pi_old) without an importance weight: its coefficient {d.loss_coefficient or 'c'} is applied to "
        "samples from the rollout policy mu, and once pi differs from mu E_mu[c * grad log pi] is not the "
        "reverse-KL gradient (that needs w * (-log(delta)) with w = pi/pi_old); the bias grows with the drift"
        f"{_use(t)}. {fix[0].upper() + fix[1:]} (the importance weight the policy term already uses), or put k1 "
        f"in the reward{_ctx(t)}."
    )


def loss_without_gradient(t: KLTerm, p: Project) -> Iterable[Hit]:
    d = t.derivation
    if t.placement.kind != AS_LOSS or not penalises_reference(t) or t.placement.sign < 0:
        return
    if d.kind == "estimator" and d.grad_free:
        yield Hit(
            "KL term added to the loss, but built only from detached or rollout-time log-probs: it is a constant "
            "for the optimiser, its gradient coefficient is 0 instead of -log(delta), and it contributes no "
            f"regularisation at all{_use(t)}. Compute it from the current "
            f"log-probs that carry gradient (and use k2), or move it to the reward{_ctx(t)}."
        )


def mismatched_importance_weight(t: KLTerm, p: Project) -> Iterable[Hit]:
    d = t.derivation
    if not _loss_term(t):
        return
    if d.is_weight == "detached" and d.loss_family == "one_minus_delta":
        yield Hit(
            "k3 loss weighted by a detached importance ratio sg(pi/pi_old): coefficient w * (1 - delta), whose "
            "expectation is the forward-KL gradient; the ratio must keep its gradient for k3 (w * k3 with "
            f"differentiable w has coefficient w * (-log(delta))){_use(t)}. Drop the .detach() on the ratio, or "
            f"use k2 with the detached ratio{_ctx(t)}."
        )
    elif d.is_weight == "differentiable" and d.loss_family == "ell_one_plus_half_ell":
        yield Hit(
            "k2 loss weighted by a differentiable importance ratio pi/pi_old: coefficient "
            "w * (-log(delta)) * (1 - log(delta)/2) instead of w * (-log(delta)), biased; with k2 the ratio must "
            f"be detached{_use(t)}. Use exp(logp - old_logp).detach() * k2, or a "
            f"differentiable ratio with k3{_ctx(t)}."
        )


def partial_sequence_gradient(t: KLTerm, p: Project) -> Iterable[Hit]:
    d = t.derivation
    if _loss_term(t) and t.agg != "sequence" and t.derivation.loss_family in ("ell", "one_minus_delta") and \
            d.kind in ("estimator", "surrogate"):
        yield Hit(
            f"per-token KL as a loss: each token gets the coefficient {d.loss_coefficient} of its own log-ratio "
            "only, the partial sequence gradient E[sum_t s_t ell_t]; the sequence-level reverse-KL gradient gives "
            "token t, instead of its own -log(delta), the reward-to-go sum_{u>=t} -log(delta_u): also the credit "
            "for changing which later "
            f"states are visited (exact for a single token, biased for sequences){_use(t)}. Put k1 in the reward "
            f"with gamma = 1 returns for the full sequence gradient{_ctx(t)}."
        )


def straight_through_mismatch(t: KLTerm, p: Project) -> Iterable[Hit]:
    if t.st_mismatch and t.placement.kind in (AS_LOSS, IN_REWARD) and penalises_reference(t):
        yield Hit(
            "straight-through KL (b - b.detach() + v.detach()) whose gradient part b and value part v read "
            f"different log-prob tensors: the gradient (coefficient {t.derivation.loss_coefficient or 'of b'}) is "
            "not that of the value it logs and optimises. Build b and v from the same logp and ref_logp"
            f"{_ctx(t)}."
        )
    elif t.placement.kind == IN_REWARD and penalises_reference(t) and _is_straight_through(t):
        yield Hit(
            "straight-through KL in the reward: the reward only reaches the policy through its value v, so the "
            f"gradient trick is inert and the reward coefficient is v's, {t.derivation.reward_coefficient or 'unknown'}"
            ", not the -log(delta) the trick was meant to give. Use it as a loss, or put k1 in the reward"
            f"{_ctx(t)}."
        )


def _is_straight_through(t: KLTerm) -> bool:
    from .. import ir

    base = t.core
    while isinstance(base, ir.Op) and base.op in ("named", "at", "sg"):
        base = base.args[-1]
    return isinstance(base, ir.Op) and base.op == "add" and any(
        isinstance(a, ir.Op) and (a.op == "sg" or (a.op == "mul" and any(
            isinstance(x, ir.Op) and x.op == "sg" for x in a.args))) for a in base.args) and \
        t.derivation.loss_family == "ell" and t.derivation.estimator not in ("k2",)
