"""Split a value into additive components and find the KL core of each.

``loss = pg_loss + beta * masked_mean(kl, mask)`` has two components; the second, stripped of its
positive scale (beta), its aggregation (the masked mean) and its token weights (the mask), has the
core ``kl``.  Stop-gradients distribute over sums and scales; calls that returned the value are
remembered (``vias``) so a term can be reported where the helper is called; option choices on the
way are remembered (``conds``) as the variant the component belongs to.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

from .. import ir
from ..ir import Choice, Cond, Const, Expr, Leaf, Op, Via
from .roles import has_logp

LOGP_LIKE = set(ir.LOGP_ROLES)


@dataclass
class Component:
    sign: int
    core: Expr  # the KL part (an estimator, possibly importance-weighted)
    vias: Tuple[Via, ...] = ()
    conds: Tuple[Cond, ...] = ()  # selector conditions (variants)
    detached: bool = False
    aggregated: bool = False
    weights: Tuple[Expr, ...] = ()
    names: Tuple[str, ...] = ()  # names the value carried on the way (kl_loss, per_token_kl)
    dead: bool = False  # under an option that raises first
    at: Optional[object] = None  # location of the tuple/list item or wrapper the value was written as
    placed_inside: bool = False  # a helper on its path already placed it in a loss/reward it returns
    cscale: float = 1.0  # numeric constants that multiplied it (0.5 in 0.5 * ell**2): part of its value
    coef_loc: Optional[object] = None  # where a coefficient (beta, kl_ctl.value) first multiplied it
    mean: bool = False  # the innermost reduction (over tokens) is an average, not a sum
    aggs: Tuple[str, ...] = ()  # reductions on the way, outermost first ("sum", "mean")

    def full(self) -> Expr:
        from .roles import collapse_choices

        core = collapse_choices(self.core) if any(isinstance(n, Choice) for n in ir.walk(self.core)) else self.core
        if self.cscale != 1.0:
            core = Op("mul", (Const(self.cscale), core))
        return ir.sg(core) if self.detached else core


@dataclass
class Other:
    """A component that is not KL: what it is decides placement (a reward, a loss)."""

    sign: int
    value: Expr
    kind: str  # "reward" | "loss" | "other"


def roles_in(e: Expr) -> set:
    out = set()
    for r in ir.leaf_summary(e)[0]:
        out.add("dist:" + r[len(ir.DIST):] if r.startswith(ir.DIST) else r)
    return out


def is_kl_core(e: Expr) -> bool:
    r = roles_in(e)
    if "kl" in r or "fullkl" in r:
        return True
    logp = r & LOGP_LIKE
    dist = {x for x in r if x.startswith("dist:")}
    return len(logp) >= 2 or len(dist) >= 2


def logp_keys(e: Expr) -> frozenset:
    """The log-prob tensors an expression reads (role and identity)."""
    return frozenset(k for k in ir.leaf_summary(e)[1]
                     if k[0] in LOGP_LIKE or k[0].startswith(ir.DIST) or k[0] == "kl")


def _is_coefficient(e: Expr) -> bool:
    while isinstance(e, Op) and e.op in ("mul", "sg", "named") and e.args:
        inner = [a for a in e.args if not isinstance(a, Const)]
        if not inner:
            return False
        e = inner[-1]
    return isinstance(e, (ir.Scale, ir.Ref, ir.Opaque))


def weight_sign(e: Expr) -> int:
    """Sign of a weight factor: constants carry theirs; coefficients, masks and counts are positive."""
    if isinstance(e, Const):
        return -1 if e.value < 0 else 1
    if isinstance(e, Op):
        if e.op == "mul":
            s = 1
            for a in e.args:
                s *= weight_sign(a)
            return s
        if e.op in ("pow",) and isinstance(e.args[1], Const):
            return weight_sign(e.args[0]) if float(e.args[1].value) % 2 else 1
        if e.op in ("sg", "agg", "named"):
            return weight_sign(e.args[-1])
    return 1


def _is_weight(e: Expr) -> bool:
    """A factor that only rescales per token (positive or a sign): constants, coefficients, masks,
    token counts, opaque scalars."""
    return not has_logp(e)


def split(e: Expr) -> Tuple[List[Component], List[Other]]:
    comps: List[Component] = []
    others: List[Other] = []
    _split(e, 1, (), (), False, False, (), (), comps, others)
    return comps, others


def _split(e, sign, vias, conds, detached, agg, weights, names, comps, others, depth=0) -> None:
    if depth > 60:
        return
    d = depth + 1
    if isinstance(e, Via):
        n0 = len(comps)
        _split(e.expr, sign, vias + (e,), conds, detached, agg, weights, names, comps, others, d)
        inner = e.expr
        while isinstance(inner, Op) and inner.op in ("sg", "at"):
            inner = inner.args[0]
        placed = isinstance(inner, Op) and inner.op == "named" and _sink_name(str(inner.args[0].value)) and \
            _combined(inner.args[1])
        for c in comps[n0:]:
            c.vias = _on_path(c)
            if placed and any(v is e for v in c.vias):
                # the helper already put its own KL into a loss or reward it returns: the term is
                # the helper's, not this call's
                c.placed_inside = True
        return
    if isinstance(e, ir.Dead):
        return
    if isinstance(e, Choice):
        # options are resolved before splitting (see options.specialize); what is left are choices
        # the analysis cannot decide: every branch stays possible
        for cond, val in e.branches:
            _split(val, sign, vias, conds, detached, agg, weights, names, comps, others, d)
        return
    if isinstance(e, ir.Struct):
        for _, item in e.items:
            _split(item, sign, vias, conds, detached, agg, weights, names, comps, others, d)
        return
    if isinstance(e, Op):
        op = e.op
        if op == "named":
            nm = str(e.args[0].value)
            _split(e.args[1], sign, vias, conds, detached, agg, weights, names + (nm,), comps, others, d)
            return
        if op == "at":
            n0 = len(comps)
            _split(e.args[0], sign, vias, conds, detached, agg, weights, names, comps, others, d)
            for c in comps[n0:]:
                # the item is the estimator itself (a tuple/stack of estimators), not a value built from it
                item = e.args[0]
                while isinstance(item, Op) and item.op in ("named", "at"):
                    item = item.args[-1]
                if c.at is None and (c.core is item or c.core is e.args[0] or _loc_of(c.core) is None):
                    c.at = e.loc
            return
        if op == "add":
            dead = [a for a in e.args if _dead_value(a)]
            if dead and len(dead) < len(e.args):
                # evaluating a summand raises (an option its helper does not accept), so the whole sum
                # never exists: what is left is reported as unreachable, not as a live term
                rest = tuple(a for a in e.args if not _dead_value(a))
                n0 = len(comps)
                live = rest[0] if len(rest) == 1 else Op("add", rest, e.loc)
                _split(live, sign, vias, conds, detached, agg, weights, names, comps, others, d)
                for c in comps[n0:]:
                    c.dead = True
                return
            # Arguments that are KL-shaped on their own (two log-prob roles) over the same tensors
            # form one estimator (k3 = exp(-l) + l - 1, a straight-through b - sg(b) + sg(v)); over
            # different tensors they are different terms (a PPO surrogate plus a KL).  Arguments
            # reading one role each (logp, -ref) only make sense together (k1 = logp - ref).
            if _straight_through(e):
                _leaf(e, sign, vias, conds, detached, agg, weights, names, comps, others)
                return
            groups: dict = {}
            order = []
            partial = []
            consts = []
            for a in e.args:
                if _reduced(a) and logp_keys(a):
                    # a separately reduced summand is its own term (a policy-gradient sum next to a KL sum)
                    _split(a, sign, vias, conds, detached, agg, weights, names, comps, others, d)
                    continue
                k = logp_keys(a)
                if not k:
                    if isinstance(a, Const):
                        consts.append(a)
                    _split(a, sign, vias, conds, detached, agg, weights, names, comps, others, d)
                    continue
                if len({r for r, _ in k}) < 2 and not any(r == "kl" for r, _ in k):
                    partial.append(a)
                    continue
                if k not in groups:
                    groups[k] = []
                    order.append(k)
                groups[k].append(a)
            if partial:
                pk = frozenset().union(*(logp_keys(a) for a in partial))
                if len({r for r, _ in pk}) >= 2:
                    if len(order) == 1 and not (pk - order[0]):
                        groups[order[0]].extend(partial)
                    else:
                        groups[pk] = list(partial)
                        order.append(pk)
                else:
                    for a in partial:
                        _split(a, sign, vias, conds, detached, agg, weights, names, comps, others, d)
            if len(order) == 1 and consts:
                groups[order[0]].extend(consts)  # k3's "- 1" belongs to the estimator
            for k in order:
                g = groups[k]
                if len(g) == 1:
                    _split(g[0], sign, vias, conds, detached, agg, weights, names, comps, others, d)
                else:
                    core = e if len(g) == len(e.args) and all(a is b for a, b in zip(g, e.args)) else \
                        Op("add", tuple(g), e.loc)
                    _leaf(core, sign, vias, conds, detached, agg, weights, names, comps, others)
            return
        if op == "sg":
            _split(e.args[0], sign, vias, conds, True, agg, weights, names, comps, others, d)
            return
        if op == "agg":
            n0 = len(comps)
            _split(e.args[0], sign, vias, conds, detached, True, weights, names, comps, others, d)
            kind = "mean" if len(e.args) > 1 else "sum"
            for c in comps[n0:]:
                c.aggs = (kind,) + c.aggs  # outermost first
                c.mean = c.aggs[-1] == "mean"  # the reduction over tokens is the innermost
            return
        if op == "where":
            for a in e.args:
                _split(a, sign, vias, conds, detached, agg, weights, names, comps, others, d)
            return
        if op == "mul":
            kl_factors = []
            w = list(weights)
            s = sign
            cs = 1.0
            for f in e.args:
                if _is_weight(f):
                    if weight_sign(f) < 0:
                        s = -s
                    if isinstance(f, Const) and f.value != 0:
                        cs *= abs(f.value)
                    w.append(f)
                else:
                    kl_factors.append(f)
            if len(kl_factors) == 1:
                f0 = kl_factors[0]
                n0 = len(comps)
                if isinstance(f0, Leaf) and f0.loc is None and e.loc is not None:
                    _leaf(f0, s, vias, conds, detached, agg, tuple(w), names, comps, others, at=e.loc)
                else:
                    _split(f0, s, vias, conds, detached, agg, tuple(w), names, comps, others, d)
                has_coef = any(_is_coefficient(x) for x in w[len(weights):])
                for c in comps[n0:]:
                    if cs != 1.0:
                        c.cscale *= cs
                    if has_coef and e.loc is not None:
                        c.coef_loc = e.loc  # the outermost multiplication is seen last
                return
            if not kl_factors:
                others.append(Other(sign, e, _kind_of(e, names)))
                return
            if len(kl_factors) == len(e.args):
                core = e
            else:
                core = Op("mul", tuple(kl_factors), e.loc)
            _leaf(core, s, vias, conds, detached, agg, tuple(w), names, comps, others)
            return
        if op == "pow" and isinstance(e.args[1], Const) and e.args[1].value == -1 and _is_weight(e.args[0]):
            others.append(Other(sign, e, "other"))
            return
    _leaf(e, sign, vias, conds, detached, agg, weights, names, comps, others)


def _leaf(e, sign, vias, conds, detached, agg, weights, names, comps, others, at=None) -> None:
    if is_kl_core(e):
        comps.append(Component(sign, e, vias, conds, detached, agg, weights, names, at=at if isinstance(e, Leaf)
                               and e.loc is None else None))
    else:
        others.append(Other(sign, e, _kind_of(e, names)))


def _combined(e: Expr) -> bool:
    """Does a value combine a KL with something else that is a loss or reward term?"""
    from .roles import has_logp

    _, others = split(e)
    return any(o.kind in ("loss", "reward") or has_logp(o.value) for o in others)


def _peel_scale(a: Expr) -> Expr:
    while isinstance(a, Op) and (a.op in ("named", "at") or (a.op == "mul" and sum(
            1 for x in a.args if has_logp(x)) == 1)):
        a = a.args[-1] if a.op in ("named", "at") else next(x for x in a.args if has_logp(x))
    return a


def _reduced(a: Expr) -> bool:
    return isinstance(_peel_scale(a), Op) and _peel_scale(a).op == "agg"


def _straight_through(e: Op) -> bool:
    """b - sg(b) + sg(v): a live part whose detached copy is subtracted again."""
    live = []
    frozen = []
    for a in e.args:
        x = a
        neg = False
        while isinstance(x, Op) and x.op == "mul" and any(isinstance(y, Const) for y in x.args):
            rest = [y for y in x.args if not isinstance(y, Const)]
            if len(rest) != 1:
                break
            neg ^= any(isinstance(y, Const) and y.value < 0 for y in x.args)
            x = rest[0]
        while isinstance(x, Op) and x.op in ("named", "at"):
            x = x.args[-1]
        if isinstance(x, Op) and x.op == "sg":
            inner = x.args[0]
            while isinstance(inner, Op) and inner.op in ("named", "at"):
                inner = inner.args[-1]
            frozen.append((neg, inner))
        else:
            live.append(x)
    return any(neg and any(inner is l for l in live) for neg, inner in frozen) and len(frozen) >= 2


def _sink_name(name: str) -> bool:
    from .. import vocabulary as vocab

    return (vocab.is_loss_name(name) or vocab.is_reward_name(name)) and not vocab.is_kl_name(name)


def _loc_of(e: Expr):
    while isinstance(e, Op) and e.op in ("named", "sg", "agg") and e.args:
        e = e.args[-1]
    return getattr(e, "loc", None)


def _on_path(c: Component) -> Tuple[Via, ...]:
    """Keep the calls the estimator really came out of.  A helper that only received it as an
    argument (an aggregation helper like ``agg_loss(kl, mask)``) is not on its path: a call is kept
    when the next call (or the estimator itself) is written inside the callee."""
    from .terms import definition_loc

    vias = c.vias
    if not vias:
        return vias
    d = definition_loc(c)
    keep = []
    for i, v in enumerate(vias):
        nxt = vias[i + 1].loc if i + 1 < len(vias) else d
        if v.span is None or v.contains(nxt):
            keep.append(v)
    # a kept call whose callee was entered through a dropped one still starts the path here
    return tuple(keep)


def _kind_of(e: Expr, names: Tuple[str, ...]) -> str:
    from .. import vocabulary as vocab

    for n in ir.walk(e):
        if isinstance(n, Leaf) and n.role in ("reward", "loss"):
            return n.role
        if isinstance(n, Op) and n.op == "named":
            nm = str(n.args[0].value)
            if vocab.is_loss_name(nm):
                return "loss"
            if vocab.is_reward_name(nm):
                return "reward"
    # (the names the KL value itself carries say nothing about what it is added to)
    return "other"


def _dead_value(e: Expr) -> bool:
    """A value whose evaluation raises: a ``Dead``, detached, named, scaled or reached through a call."""
    while True:
        if isinstance(e, ir.Dead):
            return True
        if isinstance(e, Via):
            e = e.expr
        elif isinstance(e, Op) and e.op in ("sg", "named", "at"):
            e = e.args[-1]
        elif isinstance(e, Op) and e.op == "mul" and sum(1 for x in e.args if not isinstance(x, Const)) == 1:
            e = next(x for x in e.args if not isinstance(x, Const))
        else:
            return False


def _all_dead(e: Expr) -> bool:
    if isinstance(e, ir.Dead):
        return True
    if isinstance(e, Choice):
        return all(_all_dead(v) for _, v in e.branches)
    return False


def contains_dead(e: Expr) -> bool:
    return ir.has_dead(e)
