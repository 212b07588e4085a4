"""Cross-function, cross-file linking on summaries (no syntax trees).

A call to a function of the linted tree is replaced by the callee's return value with the call's
arguments substituted for its parameters (a ``Via`` node remembers the call site).  Option tests on a
parameter become tests on whatever the caller passed: a literal decides them on the spot, a config
attribute makes them config options, a parameter of the caller stays a parameter option.  Methods
resolve through the class hierarchy (``self.method()``, ``super().method()``), attributes of ``self``
through what the class's methods store in them, and tensors passed through object fields or dict keys
(``experience.kl``, ``inputs["ref_logps"]``) through what the project stores under that name.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Dict, List, Optional, Sequence, Tuple

from .. import ir
from .. import vocabulary as vocab
from . import external
from ..extract.summary import STORE, FunctionSummary, ModuleSummary
from ..ir import Call, Choice, Cond, Const, Expr, Lit, Op, Opaque, OptionKey, Param, Ref, Struct, Via

MAX_DEPTH = 8
MAX_NODES = 3000


class Linker:
    def __init__(self, summaries: Sequence[ModuleSummary]):
        self.funcs: Dict[str, FunctionSummary] = {}
        self.classes: Dict[str, object] = {}
        self.modules: Dict[str, ModuleSummary] = {}
        self.suffix: Dict[str, List[str]] = {}
        self.class_suffix: Dict[str, List[str]] = {}
        self.module_suffix: Dict[str, List[str]] = {}
        for ms in summaries:
            self.modules[ms.module] = ms
            _add_suffixes(self.module_suffix, ms.module)
            for q, fs in ms.functions.items():
                self.funcs[q] = fs
                _add_suffixes(self.suffix, q)
            for q, cs in ms.classes.items():
                self.classes[q] = cs
                _add_suffixes(self.class_suffix, q)
        self.class_attrs: Dict[str, Dict[str, Expr]] = {}
        self.fields: Dict[str, List[Expr]] = {}
        self.keys: Dict[str, List[Expr]] = {}
        self._collect_stores()
        self._returns: Dict[str, Expr] = {}
        self._in_progress: set = set()
        self.callers: Dict[str, List[str]] = {}
        self.call_args: Dict[Tuple[str, str], List[object]] = {}  # (callee, param) -> what callers pass

    # ------------------------------------------------------------------------------ indexes
    def _collect_stores(self) -> None:
        from ..classify.roles import concretize

        for fs in self.funcs.values():
            for ev in fs.events:
                if ev.kind != STORE:
                    continue
                t = ev.target
                if t.startswith("self.") and "[" not in t and fs.class_name:
                    attr = t[5:]
                    if "." in attr:
                        continue
                    v = ev.value
                    if _informative_attr(v):
                        self.class_attrs.setdefault(fs.class_name, {}).setdefault(attr, v)
                    continue
                if "[" in t:
                    name = t.split("[", 1)[1].rstrip("]").strip("'\"")
                    head = t.split("[", 1)[0]
                    if any(vocab.is_metric_name(p) for p in head.split(".")):
                        continue
                    table = self.keys
                elif "." in t:
                    name = t.rsplit(".", 1)[1]
                    table = self.fields
                else:
                    continue
                if not (vocab.logp_role(name) or vocab.is_kl_name(name)):
                    continue
                v = _flow_value(ev.value, concretize(ev.value))
                if v is not None:
                    table.setdefault(name, []).append(v)

    def find_function(self, q: str, seen: Optional[set] = None) -> Optional[FunctionSummary]:
        if q in self.funcs:
            return self.funcs[q]
        cands = self.suffix.get(q)
        if cands and len(cands) == 1:
            return self.funcs[cands[0]]
        if cands:
            return self.funcs[sorted(cands, key=len)[0]]
        # a re-export: module.name where module imports name from elsewhere
        seen = seen or set()
        if q in seen or len(seen) > 6:
            return None
        seen.add(q)
        mod, _, name = q.rpartition(".")
        ms = self._module(mod)
        if ms is not None and name in ms.imports and ms.imports[name] != q:
            return self.find_function(ms.imports[name], seen)
        # Class.method through a module alias
        if mod:
            cls = self.find_class(mod)
            if cls is not None:
                return self.find_method(cls.qualname, name)
        return None

    def _module(self, mod: str) -> Optional[ModuleSummary]:
        if mod in self.modules:
            return self.modules[mod]
        c = self.module_suffix.get(mod)
        if c:
            return self.modules[sorted(c, key=len)[0]]
        return None

    def find_class(self, q: str):
        if q in self.classes:
            return self.classes[q]
        c = self.class_suffix.get(q)
        if c:
            return self.classes[sorted(c, key=len)[0]]
        mod, _, name = q.rpartition(".")
        ms = self._module(mod) if mod else None
        if ms is not None and name in ms.imports and ms.imports[name] != q:
            return self.find_class(ms.imports[name])
        return None

    def mro(self, class_qual: str, limit: int = 12) -> List[str]:
        out, todo = [], [class_qual]
        while todo and len(out) < limit:
            c = todo.pop(0)
            cs = self.find_class(c)
            if cs is None or cs.qualname in out:
                continue
            out.append(cs.qualname)
            todo.extend(cs.bases)
        return out

    def find_method(self, class_qual: str, meth: str, skip_first: bool = False) -> Optional[FunctionSummary]:
        chain = self.mro(class_qual)
        if skip_first:
            chain = chain[1:]
        for c in chain:
            f = self.funcs.get(f"{c}.{meth}")
            if f is not None:
                return f
        return None

    def class_attr(self, class_qual: str, attr: str) -> Optional[Expr]:
        for c in self.mro(class_qual):
            v = self.class_attrs.get(c, {}).get(attr)
            if v is not None:
                return v
        return None

    # ------------------------------------------------------------------------------ resolution
    def target(self, call: Call, fs: FunctionSummary) -> Optional[FunctionSummary]:
        for t in call.target:
            if t.startswith("method:"):
                cls, _, meth = t[7:].rpartition(".")
                f = self.find_method(cls, meth)
            elif t.startswith("super:"):
                cls, _, meth = t[6:].rpartition(".")
                f = self.find_method(cls, meth, skip_first=True)
            else:
                f = self.find_function(t)
            if f is not None:
                return f
        return None

    def returns(self, f: FunctionSummary, depth: int) -> Optional[Expr]:
        if f.qualname in self._returns:
            return self._returns[f.qualname]
        if f.returns is None:
            return None
        if f.qualname in self._in_progress or depth > MAX_DEPTH:
            return Opaque(f"recursive:{f.name}")
        self._in_progress.add(f.qualname)
        try:
            r = _mark_passthrough(self.resolve(f.returns, f, depth + 1))
        finally:
            self._in_progress.discard(f.qualname)
        self._returns[f.qualname] = r
        return r

    def resolve(self, e: Expr, fs: FunctionSummary, depth: int = 0) -> Expr:
        memo: dict = {}

        def fn(x: Expr) -> Optional[Expr]:
            if isinstance(x, Call):
                return self._call(x, fs, depth)
            if isinstance(x, Op):
                if x.op == "dyncall":
                    return self._dyncall(x, fs, depth)
                if x.op == "getattr" and isinstance(x.args[1], Lit):
                    return self._getattr(x, fs)
                if x.op == "getitem" and isinstance(x.args[1], (Lit, Const)):
                    return self._getitem(x)
                if x.op in ("select",):
                    return normalize(x)
            if isinstance(x, Choice):
                return self._rekey_self(x, fs)
            return None

        try:
            out = ir.transform(e, fn, memo)
        except RecursionError:
            return Opaque("too-deep")
        if ir.size(out, MAX_NODES + 1) > MAX_NODES:
            return Opaque("too-large")
        return out

    def _external(self, call: Call, fs: FunctionSummary) -> Optional[Expr]:
        """A library API with a model (see ``external``): its KL, built at the call site."""
        for t in call.target:
            if t.startswith(("method:", "super:")):
                cls, _, meth = t.split(":", 1)[1].rpartition(".")
                v = self.class_attr(cls, meth)
                if isinstance(v, Call):
                    v = self._external_object(v)
                if isinstance(v, Ref) and v.kind == "external":
                    return external.OBJECTS[v.name](call)
                for c in self.mro(cls) + self._external_bases(cls):
                    b = external.method(c, meth)
                    if b is not None:
                        return b(call)
                continue
            b = external.function(t)
            if b is not None:
                return b(call)
            obj = self._external_object(call)
            if obj is not None:
                return obj
        return None

    def _external_object(self, call: Call) -> Optional[Expr]:
        for t in call.target:
            q = external.object_class(t)
            if q is not None:
                return Ref("external", q)
        return None

    def _external_bases(self, cls: str) -> List[str]:
        out = []
        for c in self.mro(cls):
            cs = self.find_class(c)
            for b in (cs.bases if cs else ()):
                if self.find_class(b) is None:
                    out.append(b)
        return out

    def _call(self, call: Call, fs: FunctionSummary, depth: int) -> Optional[Expr]:
        f = self.target(call, fs)
        if f is None:
            ext = self._external(call, fs)
            if ext is not None:
                return ext
            cls = None
            for t in call.target:
                if not t.startswith(("method:", "super:")):
                    cls = self.find_class(t)
                    if cls is not None:
                        break
            if cls is not None:
                # a dataclass-like constructor: an object with the fields passed
                items = [(k, v) for k, v in call.kwargs]
                return Struct(tuple(items)) if items else None
            return None
        self.callers.setdefault(f.qualname, []).append(fs.qualname)
        ret = self.returns(f, depth)
        if ret is None:
            return Opaque(f"none:{f.name}")
        binding, keymap = self._bind(call, f, fs)
        out = substitute(ret, binding, keymap)
        out = normalize(out)
        if f.no_grad:
            out = ir.sg(out)
        return Via(out, call.loc, f.qualname, (f.path, f.loc.line, f.end_line or f.loc.line))

    def _dyncall(self, x: Op, fs: FunctionSummary, depth: int) -> Optional[Expr]:
        callee = x.args[0]
        args = x.args[1:]

        def one(c: Expr) -> Optional[Expr]:
            if isinstance(c, Ref) and c.kind == "func":
                return self._call(Call((c.name,), args, (), x.loc, c.name), fs, depth)
            return None

        if isinstance(callee, Ref):
            return one(callee)
        if isinstance(callee, Choice):
            branches = []
            for cond, val in callee.branches:
                r = one(val)
                if r is None:
                    return None
                branches.append((cond, r))
            return Choice(tuple(branches), callee.loc)
        return None

    def _bind(self, call: Call, f: FunctionSummary, caller: FunctionSummary):
        params = list(f.params)
        if f.is_method and params:
            params = params[1:]
        binding: Dict[str, Expr] = {}
        for name, arg in zip(params, call.args):
            binding[name] = arg
        for k, v in call.kwargs:
            if k in f.params:
                binding[k] = v
        defaults = dict(f.defaults)
        for p in params:
            if p not in binding:
                binding[p] = defaults.get(p, Opaque(f"unbound:{p}"))
        keymap: Dict[str, object] = {}
        passed = {k for k, _ in call.kwargs} | set(params[:len(call.args)])
        for p, arg in binding.items():
            keymap[p] = _key_for_arg(p, arg, caller, self)
            if p in passed:
                lst = self.call_args.setdefault((f.qualname, p), [])
                if keymap[p] not in lst:
                    lst.append(keymap[p])
        return binding, keymap

    def _getattr(self, x: Op, fs: FunctionSummary) -> Optional[Expr]:
        base, attr = x.args[0], x.args[1].value
        if isinstance(base, Struct):
            v = base.get(attr)
            return v
        if isinstance(base, Ref) and base.kind == "self" and fs.class_name:
            v = self.class_attr(fs.class_name, attr)
            if v is not None:
                return v
            return None
        if isinstance(base, Via) and isinstance(base.expr, Struct):
            v = base.expr.get(attr)
            if v is not None:
                return Via(v, base.loc, base.callee, base.span, base.passthrough, attr)
        if attr in self.fields and not (isinstance(base, Ref) and base.kind == "self"):
            return _union(self.fields[attr], x.loc, attr)
        return None

    def _getitem(self, x: Op) -> Optional[Expr]:
        base, key = x.args
        n = normalize(x)
        if n is not x:
            return n
        if isinstance(key, Lit) and isinstance(key.value, str) and key.value in self.keys and \
                isinstance(base, (Param, Opaque, Op)) and \
                not isinstance(base, Struct):
            return _union(self.keys[key.value], x.loc, key.value)
        return None

    def _rekey_self(self, ch: Choice, fs: FunctionSummary) -> Optional[Expr]:
        """``self.loss_type`` set from ``args.loss_type`` in ``__init__``: test the config key."""
        if not fs.class_name:
            return None
        return rebuild_choice(ch, lambda k: self._self_key(k, fs))

    def _self_key(self, k: OptionKey, fs: FunctionSummary):
        if k.kind == "name" and k.name.startswith("self.") and k.name.count(".") == 1:
            v = self.class_attr(fs.class_name, k.name[5:])
            if isinstance(v, Ref) and v.kind == "config" and v.name:
                return OptionKey("config", v.name, k.display or k.name)
            if isinstance(v, (Lit, Const)):
                return ("literal", v.value if isinstance(v, Lit) else v.value)
        return k

    # --------------------------------------------------------------------------- whole functions
    def link_function(self, fs: FunctionSummary) -> FunctionSummary:
        events = []
        changed = False
        for ev in fs.events:
            v = self.resolve(ev.value, fs, 0)
            conds = tuple(map_keys(c, lambda k: self._self_key(k, fs)) if fs.class_name else c for c in ev.conds)
            conds = tuple(c for c in (_fold(c) for c in conds) if c is not True)
            if any(c is False for c in conds):
                continue
            if v is not ev.value or conds != ev.conds:
                changed = True
                ev = dataclasses.replace(ev, value=v, conds=conds)
            events.append(ev)
        if not changed:
            return fs
        return dataclasses.replace(fs, events=tuple(events))


# ---------------------------------------------------------------------------------------- helpers


def _mark_passthrough(e: Expr) -> Expr:
    """Calls whose value the function returns unchanged (through names and option choices)."""
    if isinstance(e, Via):
        return Via(e.expr, e.loc, e.callee, e.span, True, e.part)
    if isinstance(e, Op) and e.op in ("named", "at"):
        inner = _mark_passthrough(e.args[-1])
        return e if inner is e.args[-1] else Op(e.op, e.args[:-1] + (inner,), e.loc)
    if isinstance(e, Choice):
        return e.rebuild(tuple(_mark_passthrough(v) for v in e.children()))
    return e


def _add_suffixes(index: Dict[str, List[str]], q: str) -> None:
    parts = q.split(".")
    for i in range(1, len(parts)):
        index.setdefault(".".join(parts[i:]), []).append(q)


def _informative_attr(v: Expr) -> bool:
    return isinstance(v, (Lit, Const)) or (isinstance(v, Ref) and v.kind in ("config", "model", "external")) or \
        (isinstance(v, Op) and v.op == "fn:model") or \
        (isinstance(v, Call) and any(external.object_class(t) for t in v.target))


def _flow_value(raw: Expr, conc: Expr) -> Optional[Expr]:
    """What a value stored under a name tells a reader elsewhere: a log-prob tensor with its role and
    gradient status (provenance), or a KL value computed by a helper call.  Anything more complex is
    not carried across functions."""
    from ..ir import Leaf

    base = conc
    detached = False
    while isinstance(base, Op) and base.op in ("named", "sg", "at"):
        detached |= base.op == "sg"
        base = base.args[-1]
    if isinstance(base, Leaf) and (base.role in ir.LOGP_ROLES or base.role.startswith(ir.DIST)):
        return dataclasses.replace(base, grad=False if detached else base.grad, loc=None,
                                   why=base.why + " (stored, read back elsewhere)")
    r = raw
    while isinstance(r, Op) and r.op in ("named", "sg", "at"):
        r = r.args[-1]
    if isinstance(r, Call):
        return raw
    return None


def _union(values: List[Expr], loc, name: str) -> Optional[Expr]:
    uniq = []
    for v in values:
        if not any(v == u for u in uniq):
            uniq.append(v)
    if len(uniq) != 1:
        return None  # different producers: the name decides
    return Op("named", (Lit(name), uniq[0]), loc)


def _key_for_arg(param: str, arg: Expr, caller: FunctionSummary, linker: Linker):
    """What an option test on ``param`` becomes in the caller."""
    a = arg
    while isinstance(a, Op) and a.op in ("named", "at"):
        a = a.args[-1]
    if isinstance(a, Lit):
        return ("literal", a.value)
    if isinstance(a, Const):
        v = a.value
        return ("literal", int(v) if float(v).is_integer() else v)
    if isinstance(a, Ref) and a.kind == "config" and a.name:
        return OptionKey("config", a.name, a.name)
    if isinstance(a, Param):
        return OptionKey("param", a.name, a.name, a.default)
    if isinstance(a, Op) and a.op == "getattr" and isinstance(a.args[0], Ref) and a.args[0].kind == "self":
        k = OptionKey("name", f"self.{a.args[1].value}", f"self.{a.args[1].value}")
        return linker._self_key(k, caller) if caller.class_name else k
    return OptionKey("name", f"{param}@{caller.name}", param)


def map_keys(c: Cond, fn) -> object:
    """Rewrite the keys of a condition; a key mapped to ("literal", v) is decided on the spot."""
    if c.kind in ("and", "or"):
        subs = [map_keys(x, fn) for x in c.values]
        if all(s is x for s, x in zip(subs, c.values)):
            return c
        return Cond(c.kind, None, tuple(subs), c.negated)
    if c.kind == "unknown" or c.key is None:
        return c
    new = fn(c.key)
    if new is c.key:
        return c
    if isinstance(new, tuple) and new and new[0] == "literal":
        h = Cond(c.kind, c.key, c.values, c.negated).holds({c.key: new[1]})
        return h if h is not None else c
    return Cond(c.kind, new, c.values, c.negated)


def _fold(c):
    """Simplify a condition whose parts were decided (True/False) by literals."""
    if c is True or c is False:
        return c
    if not isinstance(c, Cond):
        return c
    if c.kind in ("and", "or"):
        subs = [_fold(x) for x in c.values]
        if c.kind == "and":
            if any(s is False for s in subs):
                r = False
            else:
                rest = [s for s in subs if s is not True]
                r = True if not rest else (rest[0] if len(rest) == 1 else Cond("and", None, tuple(rest)))
        else:
            if any(s is True for s in subs):
                r = True
            else:
                rest = [s for s in subs if s is not False]
                r = False if not rest else (rest[0] if len(rest) == 1 else Cond("or", None, tuple(rest)))
        if c.negated:
            if r is True or r is False:
                return not r
            return r.negate()
        return r
    return c


def substitute(e: Expr, binding: Dict[str, Expr], keymap: Dict[str, object]) -> Expr:
    """Replace parameters by arguments and parameter options by the caller's options."""
    memo: dict = {}

    def rekey(k: OptionKey):
        if k.kind == "param" and k.name in keymap:
            return keymap[k.name]
        return k

    def fn(x: Expr) -> Optional[Expr]:
        if isinstance(x, Param) and x.name in binding:
            return binding[x.name]
        if isinstance(x, Choice):
            return rebuild_choice(x, rekey)
        if isinstance(x, Op) and x.op == "select" and isinstance(x.args[1], Lit) and \
                isinstance(x.args[1].value, OptionKey):
            k = x.args[1].value
            nk = rekey(k)
            if nk is not k:
                if isinstance(nk, tuple):
                    return normalize(Op("getitem", (x.args[0], Const(float(nk[1])) if isinstance(nk[1], int)
                                                    and not isinstance(nk[1], bool) else Lit(nk[1])), x.loc))
                return Op("select", (x.args[0], Lit(nk)), x.loc)
        return None

    return ir.transform(e, fn, memo)


def rebuild_choice(x: Choice, rekey) -> Optional[Expr]:
    """A choice with its option keys rewritten; branches decided by literals are resolved."""
    branches = []
    changed = False
    for cond, val in x.branches:
        if cond is not None:
            c2 = _fold(map_keys(cond, rekey))
            if c2 is not cond:
                changed = True
            if c2 is False:
                continue
            if c2 is True:
                branches.append((None, val))
                break
            cond = c2
        branches.append((cond, val))
    if not changed:
        return None
    if not branches:
        return Lit(None)
    if len(branches) == 1 and branches[0][0] is None:
        return branches[0][1]
    return Choice(tuple(branches), x.loc)


def normalize(e: Expr) -> Expr:
    """Index into tuples/stacks: literal indices pick an item, option indices make a choice."""
    if not isinstance(e, Op):
        return e
    if e.op == "getitem":
        base, key = e.args
        while isinstance(base, Op) and base.op in ("named", "at") and isinstance(base.args[-1], (Struct, Via, Choice)):
            base = base.args[-1]
        if isinstance(base, Via):
            inner = normalize(Op("getitem", (base.expr, key), e.loc))
            part = key.value if isinstance(key, (Lit, Const)) else None
            return Via(inner, base.loc, base.callee, base.span, base.passthrough, part)
        if isinstance(base, Op) and base.op in ("named", "sg") and isinstance(base.args[-1], (Struct, Via)):
            inner = normalize(Op("getitem", (base.args[-1], key), e.loc))
            return ir.sg(inner) if base.op == "sg" else inner
        if isinstance(base, Struct):
            k = key.value if isinstance(key, Lit) else (int(key.value) if isinstance(key, Const) else None)
            v = base.get(k)
            if v is not None:
                return v
        if isinstance(base, Choice):
            return Choice(tuple((c, normalize(Op("getitem", (v, key), e.loc))) for c, v in base.branches), base.loc)
        return e
    if e.op == "select":
        base, key = e.args
        while isinstance(base, Op) and base.op in ("named", "at"):
            base = base.args[-1]
        if isinstance(base, Via):
            return Via(normalize(Op("select", (base.expr, key), e.loc)), base.loc, base.callee, base.span,
                       base.passthrough, base.part)
        if isinstance(base, Op) and base.op == "sg" and isinstance(base.args[0], (Struct, Via)):
            return ir.sg(normalize(Op("select", (base.args[0], key), e.loc)))
        if isinstance(base, Struct) and isinstance(key, Lit) and isinstance(key.value, OptionKey):
            k = key.value
            branches = tuple((Cond("in", k, (i,)), v) for i, v in base.items)
            return Choice(branches + ((None, ir.Dead(e.loc, "index out of range")),), e.loc)
        return e
    return e


# ------------------------------------------------------------------------------ relevance (speed)

_PROVENANCE_OPS = {"fn:model", "logsoftmax", "softmax", "gather", "fullkl"}


@functools.lru_cache(maxsize=65536)
def _name_relevant(name: str) -> bool:
    toks = vocab.tokens(name)
    return bool(vocab.logp_role(name) or vocab.is_kl_name(name) or "logits" in toks or "logit" in toks)


_MENTIONS: Dict[int, Tuple[Expr, bool]] = {}


def mentions_logprobs(e: Expr) -> bool:
    """Does a raw (unlinked) value name log-probs, logits or a KL anywhere, or compute log-probs?
    (Memoised by node identity: summaries are asked this many times.)"""
    hit = _MENTIONS.get(id(e))
    if hit is not None and hit[0] is e:
        return hit[1]
    if len(_MENTIONS) > 200_000:
        _MENTIONS.clear()
    r = _mentions_logprobs(e)
    _MENTIONS[id(e)] = (e, r)
    return r


def _mentions_logprobs(e: Expr) -> bool:
    for n in ir.walk(e):
        if isinstance(n, Param):
            if _name_relevant(n.name):
                return True
        elif isinstance(n, Op):
            if n.op in _PROVENANCE_OPS:
                return True
            if n.op in ("name", "named") and _name_relevant(str(n.args[0].value)):
                return True
            if n.op in ("getattr", "getitem") and isinstance(n.args[1], Lit) and isinstance(n.args[1].value, str) \
                    and _name_relevant(n.args[1].value):
                return True
        elif isinstance(n, Call):
            for t in n.target:
                if external.function(t) or external.object_class(t):
                    return True
                if t.startswith(("method:", "super:")) and any(m == t.rpartition(".")[2]
                                                                for _, m in external.METHODS):
                    return True
    return False


def _calls_in(e: Expr) -> List[Call]:
    return [n for n in ir.walk(e) if isinstance(n, Call)]


def relevant_functions(linker: "Linker") -> set:
    """Qualified names of the functions whose events can hold a KL term: they name log-probs
    themselves, or call (transitively) a function whose return value does."""
    returns_rel: Dict[str, bool] = {}
    ret_calls: Dict[str, List[str]] = {}
    for q, f in linker.funcs.items():
        r = f.returns
        returns_rel[q] = r is not None and mentions_logprobs(r)
        callees = []
        for c in (_calls_in(r) if r is not None else ()):
            g = linker.target(c, f)
            if g is not None:
                callees.append(g.qualname)
        ret_calls[q] = callees
    changed = True
    while changed:
        changed = False
        for q, callees in ret_calls.items():
            if not returns_rel[q] and any(returns_rel.get(c) for c in callees):
                returns_rel[q] = True
                changed = True
    out = set()
    for q, f in linker.funcs.items():
        for ev in f.events:
            if mentions_logprobs(ev.value):
                out.add(q)
                break
            if any((linker.target(c, f) is not None and returns_rel.get(linker.target(c, f).qualname))
                   for c in _calls_in(ev.value)):
                out.add(q)
                break
    return out
