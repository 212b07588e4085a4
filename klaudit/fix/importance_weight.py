"""A KL loss in an update that reuses rollouts, without an importance weight -> weighted (KL105).

The estimator is multiplied by the per-token ratio pi/pi_old (the function's own ratio when it
computes one, else ``torch.exp(<logp> - <old_logp>)``): detached for k2 (coefficient w * ell), kept
differentiable for k3 and k1 (coefficients w * ell and w * (ell + 1)); each is unbiased for the
reverse-KL gradient off-policy (THEORY.md 1.5).
"""
from __future__ import annotations

from .rewrite import Rewrite, Site
from .syntax import atom

CODES = ("KL105",)
DETACHED = ("ell",)  # k2 (and the k2 a fix has just written): sg(w) * k2
DIFFERENTIABLE = ("one_minus_delta", "const")  # k3, k1: w * k3, w * k1


def apply(site: Site, rw: Rewrite) -> bool:
    family = rw.family or site.term.derivation.loss_family
    policy = site.ratio.policy_code if site.ratio is not None else _policy_name(site)
    if policy is None:
        return False
    found = site.operands.ratio(policy)
    if found is None:
        return False
    name, expr = found
    if family in DETACHED:
        w = f"{name}.detach()" if name else f"{atom(expr)}.detach()"
        kind = "the detached importance ratio"
    elif family in DIFFERENTIABLE:
        w = name or atom(expr)
        kind = "the differentiable importance ratio"
    else:
        return False
    rw.weight = w
    what = "weight it" if rw.notes else "weight the KL loss"
    rw.notes.append(f"{what} by {kind} {w} (pi/pi_old, as in the policy term): unbiased off-policy")
    return True


def _policy_name(site: Site):
    for role, name, _ in site.term.roles:
        if role == "policy" and name.isidentifier():
            return name
    return None
