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
from ..derive.coefficient import derive
from ..extract.summary import Event, FunctionSummary
from ..ir import Expr, Leaf, Loc, Op, OptionKey
from . import options as O
from .components import Component, split, roles_in
from .placement import event_placement, stronger
from .roles import concretize, has_logp

CONF_ORDER = {"high": 2, "medium": 1, "low": 0}
PAIRWISE = {"chosen", "rejected", "winner", "loser", "preferred", "dispreferred", "win", "lose"}


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
    ai: tuple  # the option assignment (sorted items)
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
    return definition_loc(comp) or ev.loc


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


WRAPPERS = ("clamp", "sg", "named", "agg", "at")


def estimator_node(e: Expr) -> Expr:
    """Descend through value-keeping wrappers (a clamp, a detach) to the estimator itself."""
    from .components import is_kl_core

    while isinstance(e, Op) and e.op in WRAPPERS and e.args and is_kl_core(e.args[0] if e.op != "named"
                                                                           else e.args[1]):
        e = e.args[1] if e.op == "named" else e.args[0]
    while isinstance(e, ir.Via):
        e = e.expr
    return e


def definition_loc(comp: Component) -> Optional[Loc]:
    if comp.at is not None:
        return comp.at
    return expr_loc(estimator_node(comp.core))


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
            if isinstance(n, Leaf) and n.role == ir.MASK:
                ctx.add("mask")
            if isinstance(n, Leaf) and set(vocab.tokens(n.key)) & PAIRWISE:
                ctx.add("pairwise")
            elif isinstance(n, Op) and n.op == "named" and set(vocab.tokens(str(n.args[0].value))) & PAIRWISE:
                ctx.add("pairwise")
    return tuple(sorted(ctx))


def function_terms(fs: FunctionSummary, resolver: Optional[DefaultResolver] = None,
                   budget_s: float = 2.0) -> List[M.KLTerm]:
    resolver = resolver or LocalDefaults()
    evs: List[Tuple[Event, Expr]] = []
    for ev in _expand_returns(fs):
        v = concretize(ev.value)
        if has_logp(v):
            evs.append((ev, v))
    if not evs:
        return []
    fctx = function_context(fs, [v for _, v in evs])
    if "pairwise" in fctx and not any(isinstance(n, Op) and n.op == "named" and vocab.is_kl_name(str(n.args[0].value))
                                      for _, v in evs for n in ir.walk(v)):
        return []  # a preference objective (chosen/rejected pairs) with nothing named a KL: no KL term
    # ------------------------------------------------------------------ options, event by event
    defaults: Dict[OptionKey, Tuple[object, M.DefaultSource]] = {}
    seen_keys: Dict[OptionKey, None] = {}
    accs: Dict[Tuple, _TermAcc] = {}
    kl_by_assign: Dict[Tuple, set] = {}  # assignment -> events that hold a KL under it
    event_assigns: Dict[Loc, List[Tuple]] = {}
    cands_all: Dict[OptionKey, List[object]] = {}
    for ev, v in evs:
        keys: Dict[OptionKey, None] = {}
        for k in O.keys_in(v, anchored_only=True):
            keys.setdefault(k, None)
        for k in O.cond_keys(ev.conds):
            keys.setdefault(k, None)
        klist = list(keys)
        for k in klist:
            if k not in seen_keys:
                seen_keys[k] = None
                d = resolver.default(k, fs)
                if d is not None:
                    defaults[k] = d
        cands = {}
        for k in klist:
            dv = defaults[k][0] if k in defaults else O.OTHER
            cands[k] = O.candidates(k, [v], ev.conds, dv)
            merged = cands_all.setdefault(k, [])
            merged.extend(x for x in cands[k] if x not in merged)
        base = _event_base(klist, defaults, cands, ev.conds)
        has_choice = ir.has_choice(v)
        split_memo: dict = {}  # assignments that leave the value unchanged share one split
        spec_memo: dict = {}
        for A in O.assignments(klist, cands, base):
            akey = tuple(sorted(((k, v2) for k, v2 in A.items()), key=lambda kv: repr(kv)))
            event_assigns.setdefault(ev.loc, []).append(akey)
            if not O.conds_hold(ev.conds, A):
                continue
            sv = O.specialize(v, A, spec_memo) if klist and has_choice else v
            memo_hit = split_memo.get(id(sv))
            if memo_hit is None:
                comps, others = split(sv)
                placed = [(c, event_placement(ev, fs, c, others)) for c in comps if not c.placed_inside]
                split_memo[id(sv)] = memo_hit = (sv, placed)
            for c, pl in memo_hit[1]:
                loc = core_loc(c, ev)
                key = (loc.line, loc.col, loc.path) if c.vias else (loc.line, loc.col, loc.path, "def")
                acc = accs.get(key)
                if acc is None:
                    acc = accs[key] = _TermAcc(loc, ev.stmt)
                acc.occs.append(_Occ(akey, ev, c, pl))
                kl_by_assign.setdefault(akey, set()).add(ev.loc)
    klist = list(seen_keys)
    # a value that only feeds a bigger estimator (kl = ref - logp, then k3 built from it) is part of
    # that term, not a term of its own
    all_parts = set()
    cores_seen = set()
    for acc in accs.values():
        for o in acc.occs:
            core = o.comp.core
            if id(core) in cores_seen:
                continue
            cores_seen.add(id(core))
            for n in ir.walk(core):
                if n is not core:
                    all_parts.add(id(n))
    terms = []
    for key, acc in accs.items():
        if all(o.placement is None for o in acc.occs) and all(
                id(o.comp.core) in all_parts or _inner_of(o.comp, all_parts) for o in acc.occs):
            continue
        t = _build_term(fs, acc, event_assigns, klist, defaults, cands_all, kl_by_assign, fctx, budget_s)
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


def _event_base(klist, defaults, cands, conds) -> Dict[OptionKey, object]:
    """The assignment the others vary around: the defaults, with the keys the event's own path
    conditions test turned (one by one) to values under which the event happens."""
    base = {k: defaults[k][0] for k in klist if k in defaults}
    for k in klist:
        base.setdefault(k, cands[k][0])
    for c in conds:
        if c.holds(base) is not False:
            continue
        for a in c.atoms():
            if a.key is None or a.key not in base:
                continue
            for v in cands.get(a.key, ()):
                trial = dict(base)
                trial[a.key] = v
                if c.holds(trial) is not False:
                    base = trial
                    break
            if c.holds(base) is not False:
                break
    return base


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


def _default_assigns(acc: _TermAcc, event_assigns, klist, defaults, cands, kl_by_assign) -> Tuple[set, Tuple]:
    present = {o.ai for o in acc.occs}
    known = [k for k in klist if k in defaults]

    def consistent(akey, flips=()):
        A = dict(akey)
        return all(A[k] == defaults[k][0] for k in known if k in A and k not in flips)

    ev_locs = {o.ev.loc for o in acc.occs}
    pool = {a for loc in ev_locs for a in event_assigns.get(loc, ())}
    dcons = {a for a in pool if consistent(a)}
    hit = present & dcons
    if hit:
        return hit, ()
    # is the KL path off under the defaults in the events holding this term?
    any_kl_default = any(kl_by_assign.get(a, set()) & ev_locs for a in dcons)
    if any_kl_default:
        return set(), ()
    switches = [k for k in known if O.key_is_switch(k, cands.get(k, []))]
    best: Optional[Tuple[int, set, Tuple]] = None
    for a in present:
        A = dict(a)
        flipped = tuple(k for k in known if k in A and A[k] != defaults[k][0])
        if all(k in switches for k in flipped):
            n = len(flipped)
            if best is None or n < best[0]:
                best = (n, {a}, flipped)
            elif n == best[0]:
                best[1].add(a)
    if best is None:
        return set(), ()
    return best[1], best[2]


def _build_term(fs, acc: _TermAcc, assigns, klist, defaults, cands, kl_by_assign, fctx, budget_s):
    klist = [k for k in klist if any(k in dict(o.ai) for o in acc.occs)]
    # variants: distinct cores (by canonical form and definition place)
    vmap: Dict[Tuple, dict] = {}
    for o in acc.occs:
        c = o.comp
        dloc = definition_loc(c) or acc.loc
        vk = (canonical(c.core), dloc.line, dloc.path, c.dead)
        rec = vmap.get(vk)
        if rec is None:
            rec = vmap[vk] = {"comp": c, "placement": None, "assigns": set(), "dloc": dloc, "dead": c.dead,
                              "dead_all": True, "occs": []}
        new_pl = stronger(rec["placement"], o.placement)
        if o.placement is not None and (new_pl is o.placement or o.placement.kind == new_pl.kind):
            # judge the version that reaches the strongest sink (the loss, not the log line), as late as
            # it is seen (after its final aggregation)
            rec["comp"] = c
        rec["placement"] = new_pl
        rec["assigns"].add(o.ai)
        rec["occs"].append(o)
        if not (c.dead or ir.has_dead(c.core)):
            rec["dead_all"] = False
    default_set, flipped = _default_assigns(acc, assigns, klist, defaults, cands, kl_by_assign)
    variants = []
    for vk, rec in vmap.items():
        c: Component = rec["comp"]
        d = derive(c.full(), budget_s)
        named_kl = any(vocab.is_kl_name(n) for n in c.names)
        pl_kind = rec["placement"].kind if rec["placement"] else M.UNKNOWN
        only_kl_leaf = "kl" in roles_in(c.core) and not (roles_in(c.core) & set(ir.LOGP_ROLES))
        if only_kl_leaf:
            # a value merely named like a KL: a term only where it enters a reward or a loss
            is_kl = pl_kind in (M.AS_LOSS, M.IN_REWARD)
        else:
            is_kl = (d.kind in ("estimator", "full") or (d.kind == "surrogate" and (d.loss_family == "ell" or named_kl))
                     or (named_kl and d.anchor != ""))
        if is_kl and pl_kind == M.UNKNOWN and not (named_kl or vocab.is_kl_name(fs.name)) and \
                d.estimator in ("k1", "unknown"):
            # a bare log-ratio that goes nowhere we can see (a DPO implicit reward, a helper's
            # intermediate): not reported
            is_kl = False
        if not is_kl and d.underived and {ir.POLICY} <= roles_in(c.core) and \
                roles_in(c.core) & {ir.REF, ir.TEACHER}:
            # the derivation ran out of its budget (or the expression is too large): the policy and
            # reference log-probs say it may be a KL term; listed as unknown with the note, never judged
            is_kl = True
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
                  is_default=v["is_default"], reachable=not v["rec"]["dead_all"], chain=_chain(v["rec"]["comp"]),
                  placement_loc=v["pl"].loc, flipped=bool(flipped) and v["is_default"] is not False,
                  core=v["rec"]["comp"].full())
        for v in sorted(variants, key=lambda v: (v["rec"]["dloc"].path, v["rec"]["dloc"].line, v["rec"]["dloc"].col))
    )
    c: Component = main["rec"]["comp"]
    leaves = [n for n in ir.walk(c.core) if isinstance(n, Leaf)]
    pairwise = any(set(vocab.tokens(n.key)) & PAIRWISE for n in leaves) or (
        "pairwise" in fctx and not any(vocab.is_kl_name(n) for n in c.names))
    if pairwise:
        # log-ratios of chosen/rejected pairs: a preference objective's implicit reward (DPO family),
        # not a regulariser toward the reference
        return None
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
    if main["d"].underived:
        notes.append(main["d"].note)
    via = tuple(f"{v.callee}@{v.loc.path}:{v.loc.line}" for v in c.vias if v.loc is not None)
    main_pl = main["pl"]
    return M.KLTerm(
        loc=acc.loc, function=fs.qualname, stmt=acc.stmt, derivation=main["d"], placement=main_pl, core=c.full(),
        definition=main["rec"]["dloc"] if c.vias else None, via=via, variants=vtuple if len(vtuple) > 1 or klist else (),
        defaults=dsrc, confidence=conf, roles=roles, detached=detached,
        chain=_chain(c), report_at_use=bool(c.vias) and c.vias[0].part is not None,
        masked=_masked(c), agg=_agg(c), live_grad=_live_grad(c.core, c.detached), st_mismatch=_st_mismatch(c.core),
        aggregation="aggregated" if c.aggregated else "per-token", reachable=not main["rec"]["dead_all"],
        notes=tuple(notes), kl_name=any(vocab.is_kl_name(n) for n in c.names), context=fctx,
    )


def _has_mask(e: Expr) -> bool:
    return any(isinstance(n, Leaf) and n.role == ir.MASK for n in ir.walk(e))


def _masked(c: Component) -> bool:
    return _has_mask(c.core) or any(_has_mask(w) for w in c.weights)


def _agg(c: Component) -> str:
    if any(isinstance(n, Op) and n.op == "agg" for n in ir.walk(c.core)):
        return "sequence"  # reduced inside the estimator: a sequence-level KL
    if not c.aggregated:
        return "none"
    divided = any(isinstance(w, Op) and w.op == "pow" and isinstance(w.args[1], ir.Const) and w.args[1].value < 0
                  and _has_mask(w.args[0]) for w in c.weights)
    if divided and c.aggs.count("sum") <= 1:
        return "token-mean"
    if len(c.aggs) >= 2 and c.aggs[-1] == "sum":
        return "seq-mean-token-sum"  # summed over a sequence's tokens, then averaged
    return "mean" if c.mean else "sum"


def _live_grad(core: Expr, detached: bool) -> Tuple[str, ...]:
    """Roles whose log-probs reach this value with their gradient (a forward pass outside no_grad,
    not detached): a live reference, or a live policy in a reward."""
    if detached:
        return ()
    out = set()

    def go(e: Expr, frozen: bool) -> None:
        if isinstance(e, Op) and e.op == "sg":
            return
        if isinstance(e, Leaf):
            if e.grad is True and not frozen and (e.role in ir.LOGP_ROLES or e.role.startswith(ir.DIST)):
                out.add(e.role.replace(ir.DIST, ""))
            return
        for ch in e.children():
            go(ch, frozen)

    go(core, False)
    return tuple(sorted(out))


def _st_mismatch(core: Expr) -> bool:
    """b - sg(b) + sg(v): the parts that carry gradient and the detached value must read the same
    log-prob tensors (otherwise the gradient is not that of the logged value's estimator)."""
    from .components import logp_keys

    base = core
    while isinstance(base, Op) and base.op in ("named", "at"):
        base = base.args[-1]
    if not (isinstance(base, Op) and base.op == "add"):
        return False
    live, frozen = [], []
    for a in base.args:
        inner = a
        while isinstance(inner, Op) and inner.op == "mul" and any(isinstance(x, ir.Const) for x in inner.args):
            rest = [x for x in inner.args if not isinstance(x, ir.Const)]
            inner = rest[0] if len(rest) == 1 else inner
            if len(rest) != 1:
                break
        if isinstance(inner, Op) and inner.op == "sg":
            frozen.append(inner.args[0])
        elif logp_keys(a):
            live.append(a)
    if not live or not frozen:
        return False
    live_keys = frozenset().union(*(logp_keys(x) for x in live))
    frozen_keys = frozenset().union(*(logp_keys(x) for x in frozen))
    strip = lambda ks: {k for k in ks}
    return bool(strip(live_keys) ^ strip(frozen_keys))


def _chain(c: Component) -> Tuple[Tuple[Loc, str], ...]:
    """Where, inside the helpers a value came through, it was passed on and finally written."""
    out = []
    vias = c.vias
    for i, v in enumerate(vias):
        if i + 1 < len(vias):
            if vias[i + 1].passthrough:
                continue  # the helper only returns its callee's value: no term of its own there
            nxt = vias[i + 1].loc
        else:
            nxt = definition_loc(c)
        if nxt is not None:
            out.append((nxt, v.callee))
    return tuple(out)


def _describe_options(ais: set, assigns, klist, cands) -> Tuple[Tuple[str, str], ...]:
    """The option values selecting a variant, as (option, values) text."""
    if not klist:
        return ()
    out = []
    for k in klist:
        vals = []
        for a in sorted(ais, key=repr):
            v = dict(a).get(k, O.OTHER)
            if v not in vals:
                vals.append(v)
        allv = [v for v in cands.get(k, [])]
        if set(map(repr, vals)) == set(map(repr, allv)):
            continue
        out.append((k.label(), " | ".join("any other value" if v is O.OTHER else repr(v) for v in vals)))
    return tuple(out)
