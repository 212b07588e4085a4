"""The one table of rule codes.  Codes are KL + three digits by family (KL1xx estimator/gradient,
KL2xx sign/direction/accounting, KL3xx detach, KL4xx numerics, KL5xx reduction/masking, KL9xx
meta); every code has a kebab-case name accepted wherever a code is, and a doc in ``rules/``."""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Set

from . import detach as D
from . import direction as R
from . import estimator as E
from . import meta as X
from . import numerics as N
from . import reduction as S
from .base import Rule

RULES: List[Rule] = [
    Rule("KL101", "k1-as-loss", "high", "k1 differentiated as a loss: zero expected gradient.", E.k1_as_loss,
         pathology="P01"),
    Rule("KL102", "k3-as-loss", "medium", "k3 differentiated as a loss: coefficient 1 - delta, the forward-KL "
         "gradient.", E.k3_as_loss, pathology="P02"),
    Rule("KL103", "non-k1-in-reward", "high", "k2, k3 or abs in the reward: no first-order restoring force.",
         E.non_k1_in_reward, pathology="P03"),
    Rule("KL104", "abs-as-loss", "medium", "absolute log-ratio as a loss: the total-variation gradient.", E.abs_as_loss,
         pathology="P04"),
    Rule("KL105", "off-policy-kl-loss-without-importance-weight", "medium",
         "KL loss on reused rollouts without an importance weight: biased off-policy.", E.off_policy_without_is,
         pathology="P07, P18"),
    Rule("KL106", "kl-loss-without-gradient", "high",
         "KL loss built from detached or rollout-time log-probs: no gradient.", E.loss_without_gradient,
         pathology="P08"),
    Rule("KL107", "mismatched-importance-weight", "medium",
         "importance weight paired with the wrong estimator (detached with k3, live with k2).",
         E.mismatched_importance_weight, pathology="P09"),
    Rule("KL108", "partial-sequence-kl-gradient", "low",
         "per-token KL loss: partial sequence gradient.", E.partial_sequence_gradient, preview=True,
         pathology="P16"),
    Rule("KL109", "straight-through-mismatch", "low",
         "straight-through KL with mismatched tensors, or inert in the reward.", E.straight_through_mismatch,
         pathology="P15"),
    Rule("KL201", "kl-sign-error", "critical", "KL penalty with the wrong sign: ascends the KL.", R.sign_error,
         pathology="P11"),
    Rule("KL202", "forward-kl", "medium", "k3 with an inverted ratio: estimates chi-square minus KL.",
         R.forward_kl, pathology="P13"),
    Rule("KL203", "kl-double-count", "medium", "KL both in the reward and as a loss.", R.double_count,
         pathology="P12"),
    Rule("KL301", "reward-kl-not-detached", "high", "reward KL carries gradient into the policy.",
         D.reward_not_detached, pathology="P05"),
    Rule("KL302", "reference-carries-gradient", "high", "reference log-probs carry gradient.",
         D.reference_has_gradient, pathology="P06"),
    Rule("KL401", "clamp-zeroes-kl-gradient", "medium", "clamp on the KL zeroes its gradient on drifted tokens.",
         N.clamp_zeroes_gradient, pathology="P10"),
    Rule("KL501", "kl-over-padding", "high", "KL averaged or summed over padding.", S.kl_over_padding,
         pathology="P14"),
    Rule("KL502", "kl-normalization-rescales-beta", "info", "token-mean KL loss: beta rescaled by lengths.",
         S.normalization_rescales_beta, preview=True, pathology="P17"),
    Rule("KL901", "unreachable-kl-branch", "info", "KL expression that no option value can reach.",
         X.unreachable_kl_branch, preview=True),
]

BY_CODE: Dict[str, Rule] = {r.code: r for r in RULES}
BY_NAME: Dict[str, Rule] = {r.name: r for r in RULES}


def lookup(token: str) -> Optional[Rule]:
    t = token.strip()
    return BY_CODE.get(t.upper()) or BY_NAME.get(t.lower())


def expand(tokens: Iterable[str]) -> Set[str]:
    """Codes selected by codes, names or prefixes ("KL1", "KL", "ALL")."""
    out: Set[str] = set()
    for tok in tokens:
        t = tok.strip()
        if not t:
            continue
        r = lookup(t)
        if r is not None:
            out.add(r.code)
            continue
        up = t.upper()
        if up == "ALL":
            out.update(BY_CODE)
            continue
        matched = [c for c in BY_CODE if c.startswith(up)]
        if not matched:
            raise ValueError(f"unknown rule code, name or prefix: {t!r}")
        out.update(matched)
    return out


def resolve_selection(select: Iterable[str], ignore: Iterable[str], preview: bool,
                      extend_select: Iterable[str] = ()) -> Set[str]:
    select = list(select)
    chosen = expand(select) if select else {r.code for r in RULES if preview or not r.preview}
    if select and not preview:
        # an explicit code selects a preview rule too; a prefix selects only stable ones
        explicit = {lookup(t).code for t in select if lookup(t) is not None}
        chosen = {c for c in chosen if not BY_CODE[c].preview or c in explicit}
    chosen |= expand(extend_select)
    chosen -= expand(ignore)
    return chosen
