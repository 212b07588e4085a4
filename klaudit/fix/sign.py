"""A KL penalty with the wrong sign -> the penalty (KL201).

Either the operator that combines the KL with the reward or loss is flipped (``reward + beta * kl``
-> ``reward - beta * kl``, ``loss - beta * kl`` -> ``loss + beta * kl``, ``+=`` <-> ``-=``), or a k1
written as ``ref_logp - logp`` is written ``logp - ref_logp`` (THEORY.md P11).
"""
from __future__ import annotations

from typing import Optional

import libcst as cst

from ..model import IN_REWARD
from .rewrite import Rewrite, Site

CODES = ("KL201",)


def apply(site: Site, rw: Rewrite) -> bool:
    t = site.term
    d = t.derivation
    pl = t.placement
    scale = d.reward_scale if pl.kind == IN_REWARD else d.loss_scale
    if scale < 0 and pl.sign > 0:
        if rw.grad is not None:
            return True  # the estimator has just been written as logp - ref_logp
        r = site.ratio
        if d.estimator != "k1" or r is None or r.subtraction is None:
            return False
        rw.swap = r.subtraction
        rw.notes.append(f"write the log-ratio as {r.policy_code} - {r.ref_code} (it was {r.ref_code} - "
                        f"{r.policy_code}, a negated KL)")
        return True
    if pl.sign < 0 and scale > 0:
        node = operator_node(site)
        if node is None:
            return False
        rw.flip = node
        rw.notes.append("subtract the KL from the reward" if pl.kind == IN_REWARD else "add the KL to the loss")
        return True
    return False


def operator_node(site: Site) -> Optional[cst.CSTNode]:
    """The ``+``/``-`` (or ``+=``/``-=``) that combines the KL with the reward or loss."""
    pl = site.term.placement
    if pl.loc is None or pl.loc.path != site.term.loc.path:
        return None
    pf = site.pf
    node = pf.node_at(pl.loc)
    if node is None or (pf.function(node) or pf.module) is not site.scope:
        return None  # not found, or in another function (a caller): no edit there
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, (cst.Add, cst.Subtract)):
        return node if _holds_kl(site, node.right) and not _holds_kl(site, node.left) else None
    child = node
    for a in pf.ancestors(node):
        if isinstance(a, cst.BinaryOperation) and isinstance(a.operator, (cst.Add, cst.Subtract)):
            return a if a.right is child else None
        if isinstance(a, cst.AugAssign):
            ok = isinstance(a.operator, (cst.AddAssign, cst.SubtractAssign)) and a.value is child
            return a if ok else None
        if isinstance(a, cst.BinaryOperation) and not isinstance(a.operator, (cst.Multiply, cst.Divide)):
            return None
        method = (isinstance(a, cst.Attribute) and a.value is child) or (isinstance(a, cst.Call) and a.func is child)
        if not (isinstance(a, cst.BinaryOperation) or method):
            return None  # through a call argument, a comparison, ...: no simple operator to flip
        child = a
    return None


def _holds_kl(site: Site, node: cst.CSTNode) -> bool:
    """``node`` contains the estimator itself, or the name it is assigned to."""
    from .tree import walk

    pf = site.pf
    parent = pf.parent(site.est)
    name = None
    if isinstance(parent, cst.Assign) and len(parent.targets) == 1 and isinstance(parent.targets[0].target, cst.Name):
        name = parent.targets[0].target.value
    for n in walk(node):
        if n is site.est or (name is not None and isinstance(n, cst.Name) and n.value == name):
            return True
    return False


def flipped(node: cst.CSTNode) -> cst.CSTNode:
    op = node.operator
    ws = dict(whitespace_before=op.whitespace_before, whitespace_after=op.whitespace_after)
    if isinstance(node, cst.AugAssign):
        new = cst.SubtractAssign(**ws) if isinstance(op, cst.AddAssign) else cst.AddAssign(**ws)
    else:
        new = cst.Subtract(**ws) if isinstance(op, cst.Add) else cst.Add(**ws)
    return node.with_changes(operator=new)
