"""The one table of rule codes.  Codes are KL + three digits by family (KL1xx estimator/gradient,
KL2xx sign/direction/accounting, KL3xx detach, KL4xx numerics, KL5xx reduction/masking, KL9xx
meta); every code has a kebab-case name accepted wherever a code is, and a doc in ``rules/``."""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Set

from . import estimator as E
from .base import Rule

RULES: List[Rule] = [
    Rule("KL101", "k1-as-loss", "high", "k1 differentiated as a loss: zero expected gradient.", E.k1_as_loss,
         pathology="P01"),
    Rule("KL102", "k3-as-loss", "medium", "k3 differentiated as a loss: coefficient 1 - delta, the forward-KL "
         "gradient.", E.k3_as_loss, pathology="P02"),
    Rule("KL103", "non-k1-in-reward", "high", "k2, k3 or abs in the reward: no first-order restoring force.",
         E.non_k1_in_reward, pathology="P03"),
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
