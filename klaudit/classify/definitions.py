"""Terms at the helpers themselves.

A helper such as ``kl_penalty(logprob, ref_logprob, kind)`` computes estimators but does not
decide where they go: its callers do.  Each call-site term carries, per variant, the chain of
helper locations the value came through.  Grouping those by location gives the helper's own terms:
what each branch is, where its callers put it, and whether the shipped defaults select it there.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List

from .. import model as M


def helper_terms(terms: List[M.KLTerm]) -> List[M.KLTerm]:
    groups: Dict[tuple, List[tuple]] = {}
    for t in terms:
        if not t.via:
            continue
        for v in t.variants or ():
            for loc, func in v.chain:
                groups.setdefault((loc.path, loc.line, loc.col), []).append((t, v, loc, func))
        if not t.variants:
            for loc, func in t.chain:
                v = M.Variant(options=(), loc=t.definition or t.loc, derivation=t.derivation,
                              placement=t.placement.kind, is_default=True, reachable=t.reachable,
                              placement_loc=t.placement.loc)
                groups.setdefault((loc.path, loc.line, loc.col), []).append((t, v, loc, func))
    out = []
    for key, items in groups.items():
        out.append(_build(items))
    return out


def _build(items) -> M.KLTerm:
    t0, v0, loc, func = items[0]
    contexts = []
    for t, v, _, _ in items:
        contexts.append(M.Variant(
            options=(("called at", f"{t.loc.path}:{t.loc.line}"),) + tuple(v.options), loc=v.loc,
            derivation=v.derivation, placement=v.placement, is_default=v.is_default, reachable=v.reachable,
            context=t.loc, placement_loc=v.placement_loc, flipped=v.flipped, core=v.core,
        ))
    live = [c for c in contexts if c.is_default is not False]
    placed = [c for c in live if c.placement != M.UNKNOWN]
    if placed:
        live = placed  # callers that put the value somewhere decide; the helper's own view does not
    # the helper under the shipped defaults: contexts active without turning any switch on come first
    strict = [c for c in live if not c.flipped]
    if strict:
        contexts = [c if (c in strict or c.is_default is False) else dataclasses.replace(c, is_default=False)
                    for c in contexts]
        live = strict
    pool = live or contexts
    best = max(pool, key=lambda c: M.PRECEDENCE.get(c.placement, 0))
    kinds = sorted({c.placement for c in pool if c.placement != M.UNKNOWN})
    detail = "decided by its callers" + (f" ({', '.join(kinds)})" if len(kinds) > 1 else "")
    placement = M.Placement(best.placement, best.placement_loc, 1, detail, "")
    reachable = any(c.reachable for c in contexts)
    src_term = next(t for t, v, _, _ in items if v is best or (v.loc == best.loc and v.derivation == best.derivation))
    notes = []
    if not reachable:
        notes.append("unreachable: every option that reaches this expression raises first")
    if not live:
        notes.append("not selected by the shipped defaults at any call site")
    variants = tuple(dataclasses.replace(c, is_default=(c.is_default if live else False)) for c in contexts)
    defaults = []
    for t, v, _, _ in items:
        for d in t.defaults:
            if d not in defaults:
                defaults.append(d)
    return M.KLTerm(
        loc=loc, function=func, stmt=(loc.line, loc.end_line), derivation=best.derivation, placement=placement,
        core=best.core if best.core is not None else src_term.core, definition=None, via=(), variants=variants,
        defaults=tuple(defaults),
        confidence=src_term.confidence, roles=src_term.roles, detached=src_term.detached,
        aggregation=src_term.aggregation, reachable=reachable, notes=tuple(notes), kl_name=src_term.kl_name,
        context=src_term.context, masked=src_term.masked, agg=src_term.agg, live_grad=src_term.live_grad,
        st_mismatch=src_term.st_mismatch, callers=tuple(sorted({c.context for c in contexts if c.context},
                                                       key=lambda l: (l.path, l.line))),
    )
