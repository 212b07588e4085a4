"""Options: which string/int/bool settings choose between versions of a KL term, and which version
the shipped defaults pick.

A value that depends on options holds ``Choice`` nodes whose conditions test ``OptionKey``s.  The
candidate values of each key are the literals it is compared with (plus a value matching none of
them, and for suffix tests a value with that suffix).  ``specialize`` resolves every choice under
one assignment.  A term's *default* version is the one present under the default assignment; when
the KL path is off by default (a boolean switch, a coefficient compared with zero, an optional
tensor tested against None), the switches are turned on and the other options kept at their
defaults: the verdict of the KL path "once it is switched on".
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

from .. import ir
from ..ir import Choice, Cond, Expr, OptionKey

OTHER = "<other>"
_UNSET = "<unset>"
MAX_ASSIGNMENTS = 256


def _anchored(e: Expr) -> bool:
    """Does a value read a reference/teacher log-prob or a KL (the parts rules are about)?"""
    roles = ir.leaf_summary(e)[0]
    return bool(roles & {ir.REF, ir.TEACHER, "kl", ir.DIST + ir.REF, ir.DIST + ir.TEACHER, "fullkl"})


def keys_in(e: Expr, anchored_only: bool = False) -> List[OptionKey]:
    """Option keys tested by the choices in ``e``; with ``anchored_only``, only by choices some branch
    of which reads a reference log-prob or a KL (a choice between policy-gradient variants does not
    change a KL term and would only multiply the assignments to try)."""
    seen: Dict[OptionKey, None] = {}
    for n in ir.walk(e):
        if isinstance(n, Choice):
            if anchored_only and not any(_anchored(v) for _, v in n.branches):
                continue
            for cond, _ in n.branches:
                if cond is not None:
                    for a in cond.atoms():
                        if a.key is not None:
                            seen.setdefault(a.key, None)
    return list(seen)


def cond_keys(conds: Iterable[Cond]) -> List[OptionKey]:
    out: Dict[OptionKey, None] = {}
    for c in conds:
        for a in c.atoms():
            if a.key is not None:
                out.setdefault(a.key, None)
    return list(out)


def candidates(key: OptionKey, exprs: Iterable[Expr], conds: Iterable[Cond] = (),
               default: object = OTHER) -> List[object]:
    """Values worth trying for ``key``: every literal it is compared with, suffixed/prefixed
    witnesses for endswith/startswith tests, and a value matching none of them."""
    lits: List[object] = []
    truthy = False
    suffixes, prefixes = [], []

    def visit(c: Cond):
        nonlocal truthy
        for a in c.atoms():
            if a.key != key:
                continue
            if a.kind == "in":
                for v in a.values:
                    if v not in lits:
                        lits.append(v)
            elif a.kind == "truthy":
                truthy = True
            elif a.kind == "endswith":
                suffixes.append(a.values[0])
            elif a.kind == "startswith":
                prefixes.append(a.values[0])

    for e in exprs:
        for n in ir.walk(e):
            if isinstance(n, Choice):
                for cond, _ in n.branches:
                    if cond is not None:
                        visit(cond)
    for c in conds:
        visit(c)
    out = list(lits)
    strs = [v for v in lits if isinstance(v, str)]
    for s in suffixes:
        for v in strs + [""]:
            w = v + s
            if w not in out:
                out.append(w)
    for p in prefixes:
        for v in strs + [""]:
            w = p + v
            if w not in out:
                out.append(w)
    if truthy:
        for v in (True, False):
            if v not in out:
                out.append(v)
    if default is not OTHER and default not in out:
        out.append(default)
    if out and all(isinstance(v, bool) for v in out) and True in out and False in out:
        pass  # a boolean switch: both values are already there
    elif OTHER not in out:
        out.append(OTHER)
    return out


def assignments(keys: List[OptionKey], cands: Dict[OptionKey, List[object]],
                base: Optional[Dict[OptionKey, object]] = None) -> List[Dict[OptionKey, object]]:
    if not keys:
        return [{}]
    total = 1
    for k in keys:
        total *= max(1, len(cands[k]))
    if total <= MAX_ASSIGNMENTS:
        return [dict(zip(keys, combo)) for combo in itertools.product(*(cands[k] for k in keys))]
    # too many: vary one key at a time around the defaults (or the first candidate) of the others
    base = {k: (base[k] if base and k in base else cands[k][0]) for k in keys}
    out = [dict(base)]
    for k in keys:
        for v in cands[k]:
            if v == base[k] and type(v) is type(base[k]):
                continue
            a = dict(base)
            a[k] = v
            out.append(a)
    return out


def specialize(e: Expr, assign: Dict[OptionKey, object], memo: Optional[dict] = None) -> Expr:
    """Resolve every choice of ``e`` whose conditions the assignment decides.  ``memo`` may be shared
    between calls with different assignments on the same expression."""
    if memo is None:
        memo = {}

    def fn(x: Expr) -> Optional[Expr]:
        if not isinstance(x, Choice):
            return None
        possible = []
        for cond, val in x.branches:
            h = True if cond is None else cond.holds(assign)
            if h is True:
                if not possible:
                    return val
                possible.append((None, val))
                return Choice(tuple(possible), x.loc)
            if h is None:
                possible.append((cond, val))
        if not possible:
            return ir.Lit(None)
        if len(possible) == 1 and possible[0][0] is not None and possible[0][0].kind != "unknown":
            return Choice(tuple(possible), x.loc)
        return Choice(tuple(possible), x.loc)

    def go(x: Expr) -> Expr:
        if not ir.has_choice(x):
            return x
        # the result depends on the assignment only through the keys the choices below test, so
        # one memo serves every assignment of an event: equal restrictions give the same object
        rk = (id(x),) + tuple((type(assign.get(k, _UNSET)).__name__, assign.get(k, _UNSET))
                              for k in ir.choice_keys(x))
        hit = memo.get(rk)
        if hit is not None and hit[0] is x:
            return hit[1]
        kids = x.children()
        new_kids = tuple([go(k) for k in kids])
        x2 = x.rebuild(new_kids) if any(a is not b for a, b in zip(kids, new_kids)) else x
        r = fn(x2)
        out = x2 if r is None else r
        memo[rk] = (x, out)
        return out

    return go(e)


def conds_hold(conds: Iterable[Cond], assign: Dict[OptionKey, object]) -> bool:
    """False only when the assignment decides a condition is false."""
    return all(c.holds(assign) is not False for c in conds)


def is_switch_value(v: object) -> bool:
    """Values whose flip only turns a path on or off (bools, None, numbers), as opposed to
    string/int options that select between implementations."""
    return isinstance(v, (bool, float)) or v is None


def key_is_switch(key: OptionKey, cands: List[object]) -> bool:
    vals = [v for v in cands if v is not OTHER]
    return all(is_switch_value(v) for v in vals)


@dataclass
class DefaultPick:
    assignment: Dict[OptionKey, object]
    flipped: Tuple[OptionKey, ...]  # switches turned on to reach the KL path
    known: Tuple[OptionKey, ...]  # keys whose default is known
