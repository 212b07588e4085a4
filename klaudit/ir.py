"""The symbolic intermediate representation that the analysis passes along.

Source code is lifted into small immutable expression trees.  They hold no CST nodes and no sympy
objects, so they pickle, hash, cache and cross process pools; sympy sees them only in ``derive``.

Leaves are tensors with a *role* (the policy's log-prob, the reference's, the rollout-time one, a mask,
...) and a *gradient status*; operations are a closed set (``OPS``) whose derivative rules the
symbolic layer knows.  ``sg`` is the stop-gradient (``.detach()``, ``torch.no_grad``): value kept,
derivative zero.  Calls to functions not yet resolved stay as ``Call`` nodes until the linker
substitutes the callee's summary; ``Choice`` holds one value per option of a string/int/bool option.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Tuple

# --------------------------------------------------------------------------------------------- locations


@dataclass(frozen=True, slots=True)
class Loc:
    """A source range; lines and columns are 1-based."""

    path: str
    line: int
    col: int
    end_line: int
    end_col: int

    def short(self) -> str:
        return f"{self.path}:{self.line}"


# ------------------------------------------------------------------------------------------------- roles

POLICY = "policy"  # log-prob of the sampled token under the trained policy
OLD = "old"  # log-prob recorded at rollout time (behaviour policy), no gradient
REF = "ref"  # log-prob under the frozen reference policy
TEACHER = "teacher"  # a teacher's log-prob (distillation, not a reference regulariser)
MASK = "mask"  # a 0/1 (or non-negative) token weight
TENSOR = "tensor"  # any other tensor
LOGP_ROLES = (POLICY, OLD, REF, TEACHER)

# Distribution-valued leaves (a whole vocabulary): roles are the same words with this prefix.
DIST = "dist:"


class Expr:
    """Base of every IR node."""

    __slots__ = ()

    def children(self) -> Tuple["Expr", ...]:
        return ()

    def rebuild(self, children: Tuple["Expr", ...]) -> "Expr":
        return self


@dataclass(frozen=True, slots=True)
class Const(Expr):
    value: float


@dataclass(frozen=True, slots=True)
class Scale(Expr):
    """An unknown scalar known (or assumed) to be positive: beta, a KL coefficient, a token count."""

    name: str


@dataclass(frozen=True, slots=True)
class Opaque(Expr):
    """A value the analysis cannot see into.  ``grad``: True/False/None (unknown)."""

    name: str
    grad: Optional[bool] = None


@dataclass(frozen=True, slots=True)
class Leaf(Expr):
    """A tensor whose role is known: a log-prob, a mask, a distribution.

    ``key`` makes two leaves with the same role distinct (two different policy tensors) while
    keeping a leaf read twice identical.  ``why`` says how the role was decided; ``confidence`` is
    "high" when it came from provenance (a model forward, no_grad, a value stored at rollout time),
    "medium" from a strong naming convention, "low" from a weak one.
    """

    role: str
    key: str
    grad: Optional[bool] = None
    why: str = ""
    confidence: str = "medium"
    loc: Optional[Loc] = None


@dataclass(frozen=True, slots=True)
class Param(Expr):
    """A function parameter, inside a function summary; replaced by the argument at a call site."""

    name: str
    default: Optional["Expr"] = None


@dataclass(frozen=True, slots=True)
class Op(Expr):
    """An operation.  ``op`` is one of OPS; ``loc`` is where the source expression builds it."""

    op: str
    args: Tuple[Expr, ...]
    loc: Optional[Loc] = None

    def children(self) -> Tuple[Expr, ...]:
        return self.args

    def rebuild(self, children: Tuple[Expr, ...]) -> Expr:
        if children == self.args:
            return self
        return Op(self.op, children, self.loc)


# add, mul: n-ary; pow(base, exponent); exp, log, abs, sign; sg: stop-gradient;
# clamp(x, lo, hi) with Const or Opaque("none") bounds; agg(x): a sum or mean over tokens/sequences,
# a positive linear map that keeps the per-token estimator; min/max(a, b); where(a, b): one of two
# values by an unknown mask; fullkl(p, q): the exact KL(p||q) over the vocabulary of two distribution
# leaves; logsigmoid(x) and other smooth opaque functions: fn:<name>(...).
OPS = {"add", "mul", "pow", "exp", "log", "abs", "sign", "sg", "clamp", "agg", "min", "max", "where", "fullkl"}


@dataclass(frozen=True, slots=True)
class OptionKey:
    """What a choice depends on: a parameter of the enclosing function ("param"), a config key
    ("config", dotted path after the config root), or an attribute/name the analysis cannot trace."""

    kind: str  # "param" | "config" | "name"
    name: str
    display: str = ""  # the source text of the option, e.g. "self.config.kl_loss_type"
    default: Optional["Expr"] = None  # parameters: their default value

    def label(self) -> str:
        return self.display or self.name


@dataclass(frozen=True, slots=True)
class Cond:
    """A condition on options.

    Atomic kinds test one ``key``: "in" (value in ``values``), "endswith"/"startswith" (``values``
    holds one string), "truthy".  "and"/"or" combine the sub-conditions in ``values``; "unknown" is
    a test the analysis cannot read (``values`` holds its source text): both outcomes stay possible.
    ``negated`` flips the result.
    """

    kind: str
    key: Optional[OptionKey]
    values: Tuple[object, ...]
    negated: bool = False

    def holds(self, assign: dict) -> Optional[bool]:
        """True/False under ``assign`` (OptionKey -> value); None when it cannot be decided."""
        if self.kind == "unknown":
            return None
        if self.kind in ("and", "or"):
            rs = [c.holds(assign) for c in self.values]
            if self.kind == "and":
                r = False if any(x is False for x in rs) else (None if any(x is None for x in rs) else True)
            else:
                r = True if any(x is True for x in rs) else (None if any(x is None for x in rs) else False)
        else:
            if self.key not in assign:
                return None
            v = assign[self.key]
            if self.kind == "in":
                r = v in self.values
            elif self.kind == "endswith":
                r = isinstance(v, str) and v.endswith(self.values[0])
            elif self.kind == "startswith":
                r = isinstance(v, str) and v.startswith(self.values[0])
            elif self.kind == "truthy":
                r = bool(v)
            else:  # pragma: no cover - closed set
                return None
        if r is None:
            return None
        return (not r) if self.negated else r

    def negate(self) -> "Cond":
        return Cond(self.kind, self.key, self.values, not self.negated)

    def atoms(self) -> Iterator["Cond"]:
        if self.kind in ("and", "or"):
            for c in self.values:
                yield from c.atoms()
        else:
            yield self

    def describe(self) -> str:
        neg = self.negated
        if self.kind in ("and", "or"):
            inner = f" {self.kind} ".join(c.describe() for c in self.values)
            return f"not ({inner})" if neg else (f"({inner})" if len(self.values) > 1 else inner)
        if self.kind == "unknown":
            return f"not ({self.values[0]})" if neg else str(self.values[0])
        name = self.key.label() if self.key else "?"
        if self.kind == "truthy":
            return f"not {name}" if neg else name
        if self.kind == "in":
            vals = ", ".join(repr(v) for v in self.values)
            if len(self.values) == 1:
                return f"{name} {'!=' if neg else '=='} {vals}"
            return f"{name} {'not in' if neg else 'in'} ({vals})"
        return f"{'not ' if neg else ''}{name}.{self.kind}({self.values[0]!r})"


def conj(conds: Tuple[Cond, ...]) -> Optional[Cond]:
    conds = tuple(c for c in conds if c is not None)
    if not conds:
        return None
    if len(conds) == 1:
        return conds[0]
    return Cond("and", None, conds)


@dataclass(frozen=True, slots=True)
class Choice(Expr):
    """A value chosen by options.  ``branches``: (condition or None for "otherwise", value); the first
    branch whose condition holds wins.  A ``Dead`` value means that option raises.  Conditions of
    kind "unknown" leave both values possible (the union is kept)."""

    branches: Tuple[Tuple[Optional[Cond], Expr], ...]
    loc: Optional[Loc] = None

    def children(self) -> Tuple[Expr, ...]:
        return tuple(b[1] for b in self.branches)

    def rebuild(self, children: Tuple[Expr, ...]) -> Expr:
        if children == self.children():
            return self
        return Choice(tuple((b[0], c) for b, c in zip(self.branches, children)), self.loc)


@dataclass(frozen=True, slots=True)
class Dead(Expr):
    """A path that raises before producing a value."""

    loc: Optional[Loc] = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Call(Expr):
    """A call the per-file pass could not resolve: the linker substitutes the callee's summary."""

    target: Tuple[str, ...]  # candidate qualified names, most specific first
    args: Tuple[Expr, ...]
    kwargs: Tuple[Tuple[str, Expr], ...]
    loc: Optional[Loc] = None
    display: str = ""
    kwlocs: Tuple[Tuple[str, Loc], ...] = ()  # where each keyword argument is written

    def children(self) -> Tuple[Expr, ...]:
        return self.args + tuple(v for _, v in self.kwargs)

    def rebuild(self, children: Tuple[Expr, ...]) -> Expr:
        if children == self.children():
            return self
        n = len(self.args)
        kw = tuple((k, c) for (k, _), c in zip(self.kwargs, children[n:]))
        return Call(self.target, children[:n], kw, self.loc, self.display, self.kwlocs)


@dataclass(frozen=True, slots=True)
class Via(Expr):
    """The value a call returned: ``expr`` came from ``callee``, called at ``loc``."""

    expr: Expr
    loc: Optional[Loc]
    callee: str
    span: Optional[Tuple[str, int, int]] = None  # the callee's file and first/last lines
    passthrough: bool = False  # the enclosing helper returns this call's value as it is
    part: Optional[object] = None  # the item taken from a tuple the call returned

    def children(self) -> Tuple[Expr, ...]:
        return (self.expr,)

    def rebuild(self, children: Tuple[Expr, ...]) -> Expr:
        if children[0] is self.expr:
            return self
        return Via(children[0], self.loc, self.callee, self.span, self.passthrough, self.part)

    def contains(self, loc: Optional[Loc]) -> bool:
        if self.span is None or loc is None:
            return False
        path, a, b = self.span
        return loc.path == path and a <= loc.line <= b


@dataclass(frozen=True, slots=True)
class Struct(Expr):
    """A tuple, list or dict literal (or a dataclass instance): items by position or key."""

    items: Tuple[Tuple[object, Expr], ...]

    def children(self) -> Tuple[Expr, ...]:
        return tuple(v for _, v in self.items)

    def rebuild(self, children: Tuple[Expr, ...]) -> Expr:
        if children == self.children():
            return self
        return Struct(tuple((k, c) for (k, _), c in zip(self.items, children)))

    def get(self, key: object) -> Optional[Expr]:
        for k, v in self.items:
            if k == key:
                return v
        return None


# -------------------------------------------------------------------------------------------- builders

ZERO = Const(0.0)
ONE = Const(1.0)
UNKNOWN = Opaque("?")


def const_value(e: Expr) -> Optional[float]:
    return e.value if isinstance(e, Const) else None


def add(*xs: Expr, loc: Optional[Loc] = None) -> Expr:
    flat = []
    for x in xs:
        if isinstance(x, Op) and x.op == "add" and x.loc is None:
            flat.extend(x.args)
        elif isinstance(x, Const) and x.value == 0.0:
            continue
        else:
            flat.append(x)
    if not flat:
        return ZERO
    if len(flat) == 1 and loc is None:
        return flat[0]
    return Op("add", tuple(flat), loc)


def mul(*xs: Expr, loc: Optional[Loc] = None) -> Expr:
    flat = []
    for x in xs:
        if isinstance(x, Op) and x.op == "mul" and x.loc is None:
            flat.extend(x.args)
        elif isinstance(x, Const) and x.value == 1.0:
            continue
        else:
            flat.append(x)
    if not flat:
        return ONE
    if len(flat) == 1 and loc is None:
        return flat[0]
    return Op("mul", tuple(flat), loc)


def neg(x: Expr, loc: Optional[Loc] = None) -> Expr:
    if isinstance(x, Const):
        return Const(-x.value)
    return mul(Const(-1.0), x, loc=loc)


def sub(a: Expr, b: Expr, loc: Optional[Loc] = None) -> Expr:
    return add(a, neg(b), loc=loc)


def div(a: Expr, b: Expr, loc: Optional[Loc] = None) -> Expr:
    if isinstance(b, Const) and b.value not in (0.0,):
        return mul(Const(1.0 / b.value), a, loc=loc)
    return mul(a, Op("pow", (b, Const(-1.0))), loc=loc)


def op(name: str, *args: Expr, loc: Optional[Loc] = None) -> Expr:
    return Op(name, tuple(args), loc)


def sg(x: Expr, loc: Optional[Loc] = None) -> Expr:
    if isinstance(x, (Const, Scale)) or (isinstance(x, Op) and x.op == "sg"):
        return x
    return Op("sg", (x,), loc)


# ------------------------------------------------------------------------------------------- traversal


def walk(e: Expr) -> Iterator[Expr]:
    """Every node of ``e``, parents before children (shared nodes visited once)."""
    seen = set()
    stack = [e]
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        yield n
        stack.extend(reversed(n.children()))


def leaves(e: Expr) -> Iterator[Leaf]:
    for n in walk(e):
        if isinstance(n, Leaf):
            yield n


def transform(e: Expr, fn: Callable[[Expr], Optional[Expr]], memo: Optional[dict] = None,
              skip: Optional[Callable[[Expr], bool]] = None) -> Expr:
    """Rebuild ``e`` bottom-up; ``fn(node)`` returns a replacement or None to keep (after children).
    ``skip(node)`` true keeps a whole subtree as it is (a cheap test that ``fn`` would change nothing)."""
    if memo is None:
        memo = {}

    def go(x: Expr) -> Expr:
        key = id(x)
        hit = memo.get(key)
        if hit is not None and hit[0] is x:
            return hit[1]
        if skip is not None and skip(x):
            memo[key] = (x, x)
            return x
        kids = x.children()
        if kids:
            new_kids = tuple([go(k) for k in kids])
            changed = False
            for a, b in zip(kids, new_kids):
                if a is not b:
                    changed = True
                    break
            x2 = x.rebuild(new_kids) if changed else x
        else:
            x2 = x
        r = fn(x2)
        out = x2 if r is None else r
        memo[key] = (x, out)
        return out

    return go(e)


def size(e: Expr, limit: int = 100000) -> int:
    n = 0
    for _ in walk(e):
        n += 1
        if n >= limit:
            break
    return n


def has_dead(e: Expr) -> bool:
    return "#dead" in leaf_summary(e)[0]


def has_choice(e: Expr) -> bool:
    return "#choice" in leaf_summary(e)[0]


@dataclass(frozen=True, slots=True)
class Lit(Expr):
    """A non-numeric literal: a string, bool or None (option values)."""

    value: object


@dataclass(frozen=True, slots=True)
class Ref(Expr):
    """Something that is not a tensor value: a config key ("config"), a function or class
    ("func"), a module ("module"), a model ("model", name says which).  Config references used as
    factors behave as positive scales (a coefficient read from the config)."""

    kind: str
    name: str
    role: str = ""


# ------------------------------------------------------------------------- memoised leaf summaries

_LEAF_MEMO: dict = {}
_LEAF_MEMO_LIMIT = 400_000


def leaf_summary(e: Expr) -> Tuple[frozenset, frozenset]:
    """(roles, (role, key) pairs) of the leaves under ``e`` plus "fullkl" for exact-KL ops, memoised by
    node identity (the analysis asks these questions of the same shared subtrees many times)."""
    hit = _LEAF_MEMO.get(id(e))
    if hit is not None and hit[0] is e:
        return hit[1]
    if len(_LEAF_MEMO) > _LEAF_MEMO_LIMIT:
        _LEAF_MEMO.clear()
    if isinstance(e, Leaf):
        res = (frozenset((e.role,)), frozenset(((e.role, e.key),)))
    else:
        roles: set = set()
        keys: set = set()
        if isinstance(e, Op) and e.op == "fullkl":
            roles.add("fullkl")
        elif isinstance(e, Choice):
            roles.add("#choice")
        elif isinstance(e, Dead):
            roles.add("#dead")
        for ch in e.children():
            r, k = leaf_summary(ch)
            roles |= r
            keys |= k
        res = (frozenset(roles), frozenset(keys))
    _LEAF_MEMO[id(e)] = (e, res)
    return res


_CHOICE_KEYS_MEMO: dict = {}


def choice_keys(e: Expr) -> Tuple[OptionKey, ...]:
    """The option keys tested by the choices under ``e``, in a fixed order, memoised by node identity:
    what a specialisation of ``e`` can depend on."""
    hit = _CHOICE_KEYS_MEMO.get(id(e))
    if hit is not None and hit[0] is e:
        return hit[1]
    if not has_choice(e):
        return ()
    if len(_CHOICE_KEYS_MEMO) > _LEAF_MEMO_LIMIT:
        _CHOICE_KEYS_MEMO.clear()
    keys: set = set()
    if isinstance(e, Choice):
        for cond, _ in e.branches:
            if cond is not None:
                keys.update(a.key for a in cond.atoms() if a.key is not None)
    for ch in e.children():
        keys.update(choice_keys(ch))
    res = tuple(sorted(keys, key=repr))
    _CHOICE_KEYS_MEMO[id(e)] = (e, res)
    return res


def clear_memos() -> None:
    _LEAF_MEMO.clear()
    _CHOICE_KEYS_MEMO.clear()


def _fast_pickle(cls) -> None:
    """Pickle a frozen slotted dataclass as ``cls(*fields)``: the default state protocol of such
    classes looks the fields up again for every object, which made loading cached summaries slow."""
    names = tuple(f.name for f in dataclasses.fields(cls))

    def __reduce__(self):
        return (cls, tuple([getattr(self, n) for n in names]))

    cls.__reduce__ = __reduce__


for _cls in list(globals().values()):
    if isinstance(_cls, type) and dataclasses.is_dataclass(_cls) and getattr(_cls, "__slots__", None) is not None \
            and _cls.__module__ == __name__ and _cls.__dataclass_params__.frozen:
        _fast_pickle(_cls)
