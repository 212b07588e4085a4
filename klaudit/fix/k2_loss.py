"""k1, k3 or |log ratio| as a loss -> k2 as the loss (KL101, KL102, KL104).

The estimator is replaced by ``0.5 * (<logp> - <ref_logp>) ** 2`` written with the user's own
log-prob expressions: its gradient coefficient is -log(delta), the reverse-KL gradient (THEORY.md
1.2).  When the value is also logged, the straight-through form
``k2 - k2.detach() + (<original>).detach()`` keeps the logged value and takes k2's gradient.
"""
from __future__ import annotations

import libcst as cst

from .. import vocabulary as vocab
from .rewrite import Rewrite, Site
from .syntax import ADD, MUL, operand_text
from .tree import walk

CODES = ("KL101", "KL102", "KL104")
NAMES = {"k1": "k1", "k3": "k3", "abs": "|log ratio|"}


def k2_text(site: Site):
    r = site.ratio
    p = operand_text(r.policy_code, r.policy, ADD)
    q = operand_text(r.ref_code, r.ref, MUL)
    return site.scaled(0.5, f"({p} - {q}) ** 2")


def apply(site: Site, rw: Rewrite) -> bool:
    if site.ratio is None:
        return False
    text = k2_text(site)
    if text is None:
        return False
    rw.grad = text
    rw.family = "ell"
    est = NAMES.get(site.term.derivation.estimator, site.term.derivation.estimator)
    name = logged(site)
    if name is not None:
        rw.value = site.pf.module.code_for_node(site.est.with_changes(lpar=[], rpar=[])).strip()
        rw.notes.append(f"use k2 = {rw.grad} as the loss (gradient coefficient -log(delta) instead of "
                        f"{site.term.derivation.loss_coefficient or 'that of ' + est}), straight-through so that "
                        f"`{name}` keeps the {est} value it logs")
    else:
        rw.notes.append(f"replace the {est} loss by k2 = {rw.grad} (gradient coefficient -log(delta) instead of "
                        f"{site.term.derivation.loss_coefficient or 'that of ' + est})")
    return True


def logged(site: Site):
    """The name the estimator is assigned to, when the function also logs it (``.item()``,
    ``float()``, a metrics container, a logging call); else None."""
    pf = site.pf
    parent = pf.parent(site.est)
    if not (isinstance(parent, cst.Assign) and len(parent.targets) == 1 and
            isinstance(parent.targets[0].target, cst.Name) and parent.value is site.est):
        return None
    name = parent.targets[0].target.value
    start = pf.range(parent)[0]
    body = getattr(site.scope, "body", None)
    if body is None:
        return None
    for n in walk(body, skip_scopes=True):
        if isinstance(n, cst.Name) and n.value == name and n is not parent.targets[0].target:
            r = pf.range(n)
            if r is not None and r[0] > start and _metric_use(pf, n):
                return name
    return None


def _metric_use(pf, use: cst.Name) -> bool:
    child = use
    for a in pf.ancestors(use):
        if isinstance(a, cst.Call):
            f = a.func
            if f is not child:
                if isinstance(f, cst.Name) and f.value in ("float", "print"):
                    return True
                if isinstance(f, (cst.Attribute, cst.Name)) and _is_metric_call(pf.code(f)):
                    return True
            if isinstance(f, cst.Attribute) and f.value is child and f.attr.value in ("item", "tolist"):
                return True
        if isinstance(a, cst.Attribute) and a.value is child and a.attr.value in ("item", "tolist"):
            return True
        if isinstance(a, (cst.Assign, cst.AugAssign)):
            targets = [t.target for t in a.targets] if isinstance(a, cst.Assign) else [a.target]
            return any(isinstance(t, (cst.Subscript, cst.Attribute)) and _metric_target(pf.code(t)) for t in targets)
        if isinstance(a, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
            return False
        child = a
    return False


def _is_metric_call(code: str) -> bool:
    parts = [p for p in code.replace("[", ".").replace("]", ".").split(".") if p]
    return any(vocab.is_metric_name(p) or p.lstrip("_").startswith("metric") for p in parts) or \
        parts[-1:] in (["log"], ["log_dict"], ["add_scalar"], ["append"]) and len(parts) > 1 and \
        any(vocab.is_metric_name(p) for p in parts[:-1])


def _metric_target(code: str) -> bool:
    head = code.split("[", 1)[0]
    return any(vocab.is_metric_name(p) or p.lstrip("_").startswith("metric") for p in head.split("."))
