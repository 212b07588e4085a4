"""k2, k3 or |log ratio| subtracted from the reward -> k1 in the reward (KL103).

The estimator is replaced by the log-ratio ``<logp> - <ref_logp>`` written with the user's own
expressions: in the (detached) reward its coefficient is -log(delta), the reverse-KL gradient
(THEORY.md 1.2).  A detach on the way to the old estimator (a log-ratio computed with
``.detach()``) is kept; a ``no_grad`` block or an outer ``.detach()`` stays where it is.
"""
from __future__ import annotations

import libcst as cst

from .operands import is_detach, under_no_grad
from .rewrite import Rewrite, Site
from .syntax import ADD, MUL, operand_text

CODES = ("KL103",)
NAMES = {"k2": "k2", "k3": "k3", "abs": "|log ratio|"}


def apply(site: Site, rw: Rewrite) -> bool:
    r = site.ratio
    if r is None:
        return False
    ell = f"{operand_text(r.policy_code, r.policy, ADD)} - {operand_text(r.ref_code, r.ref, MUL)}"
    text = site.scaled(1.0, f"({ell})")
    if text is None:
        return False
    rw.grad = ell if text == f"({ell})" else text
    rw.family = "ell"
    if (r.detached or site.term.detached) and not detached_around(site):
        rw.detach = True
    est = NAMES.get(site.term.derivation.estimator, site.term.derivation.estimator)
    rw.notes.append(f"put k1 = {rw.grad} in the reward instead of {est} (reward coefficient -log(delta) instead "
                    f"of {site.term.derivation.reward_coefficient or 'that of ' + est})")
    return True


def detached_around(site: Site) -> bool:
    """The estimator sits in a no_grad block or inside an outer ``.detach()`` already."""
    pf = site.pf
    if under_no_grad(pf, site.est):
        return True
    child = site.est
    for a in pf.ancestors(site.est):
        if is_detach(a) and a.func.value is child:
            return True
        if isinstance(a, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
            return False
        child = a
    return False
