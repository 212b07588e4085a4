"""Assemble ``KLTerm``s from a function's events.

For every assignment of the options a function's values depend on, each event's value is
specialised, split into components, and each KL component placed.  Components are grouped into
terms by where they are written (or, for values that came through a helper call, by the call site);
the versions a term takes under different options become its variants, and the one the shipped
defaults pick is marked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Protocol, Tuple

from .. import ir
from .. import model as M
from .. import vocabulary as vocab
from ..derive.canonical import canonical
from ..derive.coefficient import Derivation, derive
from ..extract.summary import Event, FunctionSummary
from ..ir import Expr, Leaf, Loc, Op, OptionKey
from . import options as O
from .components import Component, split, roles_in
from .placement import event_placement, stronger
from .roles import concretize, has_logp

CONF_ORDER = {"high": 2, "medium": 1, "low": 0}


class DefaultResolver(Protocol):
    def default(self, key: OptionKey, fs: FunctionSummary) -> Optional[Tuple[object, M.DefaultSource]]:
        ...


class LocalDefaults:
    """Defaults visible in the function itself: parameter defaults."""

    def default(self, key: OptionKey, fs: FunctionSummary):
        if key.kind == "param" and key.default is not None:
            d = key.default
            v = d.value if isinstance(d, (ir.Lit, ir.Const)) else None
            if isinstance(d, ir.Const) and float(d.value).is_integer():
                v = int(d.value)
            if isinstance(d, (ir.Lit, ir.Const)):
                return v, M.DefaultSource(key.label(), repr(v), fs.path, fs.loc.line, "param")
        return None


@dataclass
class _Occ:
    ai: int
    ev: Event
    comp: Component
    placement: Optional[M.Placement]


@dataclass
class _TermAcc:
    loc: Loc
    stmt: Tuple[int, int]
    occs: List[_Occ] = field(default_factory=list)


def core_loc(comp: Component, ev: Event) -> Loc:
    if comp.vias:
        v = comp.vias[0]
        if v.loc is not None:
            return v.loc
    return expr_loc(comp.core) or ev.loc


def expr_loc(e: Expr) -> Optional[Loc]:
    if isinstance(e, Op) and e.loc is not None:
        return e.loc
    if isinstance(e, Leaf) and e.loc is not None:
        return e.loc
    if isinstance(e, ir.Via):
        return expr_loc(e.expr)
    best = None
    for n in ir.walk(e):
        if isinstance(n, Op) and n.loc is not None:
            if best is None or (n.loc.line, n.loc.col) < (best.line, best.col):
                best = n.loc
    return best


def definition_loc(comp: Component) -> Optional[Loc]:
    return expr_loc(comp.core)


def function_context(fs: FunctionSummary, values: List[Expr]) -> Tuple[str, ...]:
    ctx = set()
    for v in values:
        for n in ir.walk(v):
            if isinstance(n, Op) and n.op == "exp":
                r = roles_in(n.args[0])
                if ir.POLICY in r and ir.OLD in r:
                    ctx.add("ppo_ratio")
            if isinstance(n, Leaf) and n.role == ir.OLD:
                ctx.add("old_logp")
    return tuple(sorted(ctx))


def function_terms(fs: FunctionSummary, resolver: Optional[DefaultResolver] = None,
                   budget_s: float = 2.0) -> List[M.KLTerm]:
    resolver = resolver or LocalDefaults()
    memo: dict = {}
    evs: List[Tuple[Event, Expr]] = []
    for ev in _expand_returns(fs):
        v = concretize(ev.value, memo)
        if has_logp(v):
            evs.append((ev, v))
    if not evs:
        return []
    fctx = function_context(fs, [v for _, v in evs])
    # ------------------------------------------------------------------ options and assignments
    keys: Dict[OptionKey, None] = {}
    for ev, v in evs:
        for k in O.keys_in(v):
            keys.setdefault(k, None)
        for k in O.cond_keys(ev.conds):
            keys.setdefault(k, None)
    klist = list(keys)
    defaults: Dict[OptionKey, Tuple[object, M.DefaultSource]] = {}
    for k in klist:
        d = resolver.default(k, fs)
        if d is not None:
            defaults[k] = d
    cands = {}
    all_conds = [c for ev, _ in evs for c in ev.conds]
    for k in klist:
        dv = defaults[k][0] if k in defaults else O.OTHER
        cands[k] = O.candidates(k, [v for _, v in evs], all_conds, dv)
    assigns = O.assignments(klist, cands)
    # ------------------------------------------------------------------ occurrences
    accs: Dict[Tuple, _TermAcc] = {}
    kl_by_assign: Dict[int, set] = {}
    for ai, A in enumerate(assigns):
        smemo: dict = {}
        for ev, v in evs:
            if not O.conds_hold(ev.conds, A):
                continue
            sv = O.specialize(v, A, smemo) if klist else v
            comps, others = split(sv)
            for c in comps:
                pl = event_placement(ev, fs, c, others)
                loc = core_loc(c, ev)
                key = (loc.line, loc.col, loc.path) if c.vias else (loc.line, loc.col, loc.path, "def")
                acc = accs.get(key)
                if acc is None:
                    acc = accs[key] = _TermAcc(loc, ev.stmt)
                acc.occs.append(_Occ(ai, ev, c, pl))
                kl_by_assign.setdefault(ai, set()).add(ev.loc)
    # a value that only feeds a bigger estimator (kl = ref - logp, then k3 built from it) is part of
    # that term, not a term of its own
    placed_parts = set()
    for acc in accs.values():
        if any(o.placement is not None for o in acc.occs):
            for o in acc.occs:
                for n in ir.walk(o.comp.core):
                    if n is not o.comp.core:
                        placed_parts.add(id(n))
    all_parts = set()
    for acc in accs.values():
        for o in acc.occs:
            for n in ir.walk(o.comp.core):
                if n is not o.comp.core:
                    all_parts.add(id(n))
    terms = []
    for key, acc in accs.items():
        if all(o.placement is None for o in acc.occs) and all(
                id(o.comp.core) in all_parts or _inner_of(o.comp, all_parts) for o in acc.occs):
            continue
        t = _build_term(fs, acc, assigns, klist, defaults, cands, kl_by_assign, fctx, budget_s)
        if t is not None:
            terms.append(t)
    return terms


def _inner_of(comp: Component, parts: set) -> bool:
    core = comp.core
    while isinstance(core, Op) and core.op in ("sg", "named", "agg"):
        core = core.args[-1]
        if id(core) in parts:
            return True
    return False


def _expand_returns(fs: FunctionSummary):
    """A tuple returned by a function: the first item is what a loss function returns as its loss;
    the others are auxiliary outputs (metrics, rewards for logging) whose use the caller decides."""
    import dataclasses

    for ev in fs.events:
        if ev.kind == "return" and isinstance(ev.value, ir.Struct) and ev.value.items and \
                all(isinstance(k, int) for k, _ in ev.value.items):
            for k, item in ev.value.items:
                yield dataclasses.replace(ev, value=item, kind="return" if k == 0 else "return_aux",
                                          target=f"return[{k}]")
        else:
            yield ev


def _default_assigns(acc: _TermAcc, assigns, klist, defaults, cands, kl_by_assign) -> Tuple[set, Tuple]:
    present = {o.ai for o in acc.occs}
    known = [k for k in klist if k in defaults]

    def consistent(A, flips=()):
        return all(A[k] == defaults[k][0] for k in known if k not in flips)

    dcons = {i for i, A in enumerate(assigns) if consistent(A)}
    hit = present & dcons
    if hit:
        return hit, ()
    # is the KL path off under the defaults in the events holding this term?
    ev_locs = {o.ev.loc for o in acc.occs}
    any_kl_default = any(kl_by_assign.get(i, set()) & ev_locs for i in dcons)
    if any_kl_default:
        return set(), ()
    switches = [k for k in known if O.key_is_switch(k, cands[k])]
    best: Optional[Tuple[int, set, Tuple]] = None
    for i in present:
        A = assigns[i]
        flipped = tuple(k for k in known if A[k] != defaults[k][0])
        if all(k in switches for k in flipped):
            n = len(flipped)
            if best is None or n < best[0]:
                best = (n, {i}, flipped)
            elif n == best[0]:
                best[1].add(i)
    if best is None:
        return set(), ()
    return best[1], best[2]


def _build_term(fs, acc: _TermAcc, assigns, klist, defaults, cands, kl_by_assign, fctx, budget_s):
    # variants: distinct cores (by canonical form and definition place)
    vmap: Dict[Tuple, dict] = {}
    for o in acc.occs:
        c = o.comp
        dloc = definition_loc(c) or acc.loc
        vk = (canonical(c.full()), dloc.line, dloc.path, c.dead)
        rec = vmap.get(vk)
        if rec is None:
            rec = vmap[vk] = {"comp": c, "placement": None, "assigns": set(), "dloc": dloc, "dead": c.dead,
                              "dead_all": True, "occs": []}
        rec["placement"] = stronger(rec["placement"], o.placement)
        rec["assigns"].add(o.ai)
        rec["occs"].append(o)
        if not ir.has_dead(c.core):
            rec["dead_all"] = False
    default_set, flipped = _default_assigns(acc, assigns, klist, defaults, cands, kl_by_assign)
    variants = []
    infos = []
    for vk, rec in vmap.items():
        c: Component = rec["comp"]
        d = derive(c.full(), budget_s)
        named_kl = any(vocab.is_kl_name(n) for n in c.names) or vocab.is_kl_name(fs.name)
        pl_kind = rec["placement"].kind if rec["placement"] else M.UNKNOWN
        only_kl_leaf = "kl" in roles_in(c.core) and not (roles_in(c.core) & set(ir.LOGP_ROLES))
        if only_kl_leaf:
            # a value merely named like a KL: a term only where it enters a reward or a loss
            is_kl = pl_kind in (M.AS_LOSS, M.IN_REWARD)
        else:
            is_kl = (d.kind in ("estimator", "full") or (d.kind == "surrogate" and (d.loss_principled() or named_kl))
                     or (named_kl and d.anchor != ""))
        if is_kl and pl_kind == M.UNKNOWN and not named_kl and d.estimator in ("k1", "unknown"):
            # a bare log-ratio that goes nowhere we can see (a DPO implicit reward, a helper's
            # intermediate): not reported
            is_kl = False
        if not is_kl:
            continue
        in_default = rec["assigns"] & default_set
        pl = rec["placement"] or M.Placement(M.UNKNOWN, None, 1, "", "")
        opts = _describe_options(rec["assigns"], assigns, klist, cands)
        variants.append(dict(rec=rec, d=d, pl=pl, in_default=bool(in_default), opts=opts))
    if not variants:
        return None
    n_default = sum(1 for v in variants if v["in_default"])
    for v in variants:
        if not default_set:
            v["is_default"] = False if klist and defaults else None
        elif v["in_default"]:
            v["is_default"] = True if n_default == 1 else None
        else:
            v["is_default"] = False
    if len(variants) == 1 and not klist:
        variants[0]["is_default"] = True
    main = next((v for v in variants if v["is_default"] is True), None) or \
        next((v for v in variants if v["is_default"] is None), None) or variants[0]
    vtuple = tuple(
        M.Variant(options=v["opts"], loc=v["rec"]["dloc"], derivation=v["d"], placement=v["pl"].kind,
                  is_default=v["is_default"], reachable=not v["rec"]["dead_all"])
        for v in sorted(variants, key=lambda v: (v["rec"]["dloc"].path, v["rec"]["dloc"].line, v["rec"]["dloc"].col))
    )
    c: Component = main["rec"]["comp"]
    leaves = [n for n in ir.walk(c.core) if isinstance(n, Leaf)]
    logp_leaves = [x for x in leaves if x.role in ir.LOGP_ROLES or x.role.startswith(ir.DIST) or x.role == "kl"]
    conf = "high"
    for x in logp_leaves:
        if CONF_ORDER.get(x.confidence, 0) < CONF_ORDER[conf]:
            conf = x.confidence
    roles = tuple(sorted({(x.role, x.key, x.why) for x in logp_leaves}))
    policy_leaves = [x for x in logp_leaves if x.role == ir.POLICY]
    detached = c.detached or (bool(policy_leaves) and all(x.grad is False for x in policy_leaves)) or \
        (not policy_leaves and bool(logp_leaves))
    dsrc = tuple(defaults[k][1] for k in klist if k in defaults)
    notes = []
    if flipped:
        notes.append("the KL path is off by default; judged with " + ", ".join(
            f"{k.label()} switched on" for k in flipped))
    if main["rec"]["dead_all"]:
        notes.append("unreachable: every option that reaches this expression raises first")
    via = tuple(f"{v.callee}@{v.loc.path}:{v.loc.line}" for v in c.vias if v.loc is not None)
    main_pl = main["pl"]
    return M.KLTerm(
        loc=acc.loc, function=fs.qualname, stmt=acc.stmt, derivation=main["d"], placement=main_pl, core=c.full(),
        definition=main["rec"]["dloc"] if c.vias else None, via=via, variants=vtuple if len(vtuple) > 1 or klist else (),
        defaults=dsrc, confidence=conf, roles=roles, detached=detached,
        aggregation="aggregated" if c.aggregated else "per-token", reachable=not main["rec"]["dead_all"],
        notes=tuple(notes), kl_name=any(vocab.is_kl_name(n) for n in c.names), context=fctx,
    )


def _describe_options(ais: set, assigns, klist, cands) -> Tuple[Tuple[str, str], ...]:
    """The option values selecting a variant, as (option, values) text."""
    if not klist:
        return ()
    out = []
    for k in klist:
        vals = []
        for i in sorted(ais):
            v = assigns[i].get(k, O.OTHER)
            if v not in vals:
                vals.append(v)
        allv = [v for v in cands[k]]
        if set(map(repr, vals)) == set(map(repr, allv)):
            continue
        out.append((k.label(), " | ".join("any other value" if v is O.OTHER else repr(v) for v in vals)))
    return tuple(out)
