"""Lift one function body into IR values and events.

An abstract interpreter over libcst nodes: statements run in order against an environment of IR
values; ``if`` on an option (a string/int/bool compared with literals) records the condition on
every value and event under it; ``torch.no_grad()`` blocks and ``@torch.no_grad()`` functions wrap
what they compute in a stop-gradient; ``.detach()`` likewise.  Calls to functions of the linted
tree stay as ``Call`` nodes for the linker.  Nothing is imported or executed.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import libcst as cst

from .. import ir
from ..ir import Call, Choice, Cond, Const, Dead, Expr, Leaf, Lit, Loc, Op, Opaque, OptionKey, Param, Ref, Struct
from .. import vocabulary as vocab
from . import configs
from . import torch_api as T
from .context import ModuleContext, dotted
from .summary import (ASSIGN, BACKWARD, CONTROLLER, MASK, METRIC, RETURN, STORE, Event,
                      FunctionSummary)

SELF = Ref("self", "self")
MAX_EXPR = 4000  # nodes: larger values become opaque (budget)
BUILTINS = {"float", "int", "len", "sum", "min", "max", "abs", "round", "bool", "str", "list", "tuple", "dict",
            "print", "isinstance", "getattr", "hasattr", "range", "enumerate", "zip", "sorted", "any", "all", "map",
            "pow", "super", "type", "set", "repr", "iter", "next", "reversed", "divmod", "id", "hash", "format"}
LOG_CALL_NAMES = {"log", "log_dict", "log_metrics", "add_scalar", "add_scalars", "info", "debug", "warning",
                  "record", "track", "log_stats", "update_metrics", "print", "log_scalar", "append_metrics"}


def _lit_of(node) -> Optional[object]:
    """Python literal of a constant node (str/int/float/bool/None/tuple of those), else a sentinel."""
    if isinstance(node, cst.SimpleString):
        try:
            return node.evaluated_value
        except Exception:
            return _NO
    if isinstance(node, cst.ConcatenatedString):
        try:
            v = node.evaluated_value
            return v if v is not None else _NO
        except Exception:
            return _NO
    if isinstance(node, cst.Integer):
        try:
            return int(node.value.replace("_", ""), 0)
        except ValueError:
            return _NO
    if isinstance(node, cst.Float):
        try:
            return float(node.value.replace("_", ""))
        except ValueError:
            return _NO
    if isinstance(node, cst.Name) and node.value in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[node.value]
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus):
        v = _lit_of(node.expression)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return -v
    if isinstance(node, (cst.Tuple, cst.List, cst.Set)):
        out = []
        for el in node.elements:
            v = _lit_of(el.value)
            if v is _NO:
                return _NO
            out.append(v)
        return tuple(out)
    return _NO


class _No:
    def __repr__(self) -> str:
        return "<no literal>"


_NO = _No()


def _last(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def is_tensorish(e: Expr) -> bool:
    return not isinstance(e, (Ref, Lit))


class Evaluator:
    """Evaluate one function (or a module body) into a FunctionSummary."""

    def __init__(self, ctx: ModuleContext, node, qualname: str, class_qual: Optional[str] = None,
                 outer_env: Optional[Dict[str, Expr]] = None, class_bases: Tuple[str, ...] = ()):
        self.ctx = ctx
        self.node = node
        self.qualname = qualname
        self.class_qual = class_qual
        self.class_bases = class_bases
        self.env: Dict[str, Expr] = dict(outer_env or {})
        self.local_imports: Dict[str, str] = {}
        self.pc: Tuple[Cond, ...] = ()
        self.no_grad = 0
        self.terminated = False
        self.events: List[Event] = []
        self.returns: List[Tuple[Tuple[Cond, ...], Expr]] = []
        self.nested: List[Tuple[object, Dict[str, Expr], str]] = []
        self.stmt_range: Tuple[int, int] = (0, 0)
        self.params: List[str] = []
        self.defaults: List[Tuple[str, Expr]] = []
        self.config_defaults: list = []

    # =========================================================================== entry points
    def run_function(self) -> FunctionSummary:
        fn = self.node
        no_grad = False
        decos = []
        static = False
        for d in fn.decorators:
            name = dotted(d.decorator.func if isinstance(d.decorator, cst.Call) else d.decorator) or ""
            q = self.qualify(name) or name
            decos.append(q)
            if q in T.NO_GRAD_CONTEXTS or _last(q) in ("no_grad", "inference_mode"):
                no_grad = True
            if _last(q) == "staticmethod":
                static = True
        if no_grad:
            self.no_grad += 1
        is_method = self.class_qual is not None and not static
        p = fn.params
        all_params = list(p.posonly_params) + list(p.params)
        if p.star_arg is not None and isinstance(p.star_arg, cst.Param):
            all_params.append(p.star_arg)
        all_params += list(p.kwonly_params)
        if p.star_kwarg is not None:
            all_params.append(p.star_kwarg)
        for i, prm in enumerate(all_params):
            name = prm.name.value
            default = None
            if prm.default is not None:
                lit = _lit_of(prm.default)
                default = Lit(lit) if lit is not _NO and not isinstance(lit, (int, float)) or isinstance(lit, bool) \
                    else (Const(float(lit)) if lit is not _NO and lit is not None else None)
                if default is None and lit is None:
                    default = Lit(None)
                if default is not None:
                    self.defaults.append((name, default))
            self.params.append(name)
            if is_method and i == 0:
                self.env[name] = SELF
            else:
                self.env[name] = Param(name, default)
        self.block(fn.body.body if isinstance(fn.body, cst.IndentedBlock) else [fn.body])
        returns = self._return_value()
        return FunctionSummary(
            qualname=self.qualname, name=fn.name.value, path=self.ctx.path, loc=self.ctx.loc(fn.name),
            params=tuple(self.params), defaults=tuple(self.defaults), returns=returns, events=tuple(self.events),
            class_name=self.class_qual, no_grad=no_grad, decorators=tuple(decos), is_method=is_method,
            static=static, end_line=self.ctx.stmt_lines(fn)[1],
        )

    def run_module_body(self, stmts) -> FunctionSummary:
        self.block(stmts)
        return FunctionSummary(
            qualname=self.qualname, name="<module>", path=self.ctx.path, loc=Loc(self.ctx.path, 1, 1, 1, 1),
            params=(), defaults=(), returns=None, events=tuple(self.events), class_name=None,
        )

    def _return_value(self) -> Optional[Expr]:
        if not self.returns:
            return None
        if len(self.returns) == 1 and not self.returns[0][0]:
            return self.returns[0][1]
        branches = []
        for conds, val in self.returns:
            branches.append((ir.conj(conds), val))
        if branches[-1][0] is not None and not self.terminated:
            branches.append((None, Lit(None)))
        return Choice(tuple(branches), self.ctx.loc(self.node.name) if hasattr(self.node, "name") else None)

    # =========================================================================== names
    def qualify(self, name: str) -> Optional[str]:
        """Qualified name for a dotted name through imports and module definitions."""
        if not name:
            return None
        head, _, rest = name.partition(".")
        table = self.local_imports if head in self.local_imports else self.ctx.imports
        if head in table:
            q = table[head]
            return f"{q}.{rest}" if rest else q
        if head in self.ctx.functions or head in self.ctx.classes:
            q = f"{self.ctx.module}.{head}"
            return f"{q}.{rest}" if rest else q
        if head in ("torch", "numpy", "math"):
            return name
        return None

    # =========================================================================== statements
    def block(self, stmts) -> None:
        for s in stmts:
            if self.terminated:
                return
            self.stmt(s)

    def stmt(self, node) -> None:
        saved = self.stmt_range
        self.stmt_range = self.ctx.stmt_lines(node)
        try:
            self._stmt(node)
        finally:
            self.stmt_range = saved

    def _stmt(self, node) -> None:
        if isinstance(node, cst.SimpleStatementLine):
            for small in node.body:
                if self.terminated:
                    return
                self.small(small)
        elif isinstance(node, cst.If):
            self.if_stmt(node)
        elif isinstance(node, (cst.For, cst.While)):
            self.loop(node)
        elif isinstance(node, cst.With):
            self.with_stmt(node)
        elif isinstance(node, (cst.Try, cst.TryStar)):
            self.try_stmt(node)
        elif isinstance(node, cst.FunctionDef):
            q = f"{self.qualname}.<locals>.{node.name.value}"
            self.nested.append((node, dict(self.env), q))
            self.env[node.name.value] = Ref("func", q)
        elif isinstance(node, cst.ClassDef):
            pass
        elif isinstance(node, cst.Match):
            for case in node.cases:
                saved_env, saved_term = dict(self.env), self.terminated
                self.block(case.body.body if isinstance(case.body, cst.IndentedBlock) else [])
                self.env, self.terminated = saved_env, saved_term

    def small(self, node) -> None:
        if isinstance(node, cst.Assign):
            value = self.ev(node.value)
            value = self.grad_ctx(value)
            for t in node.targets:
                self.assign(t.target, value, node.value)
        elif isinstance(node, cst.AnnAssign):
            if node.value is not None:
                value = self.grad_ctx(self.ev(node.value))
                self.assign(node.target, value, node.value)
        elif isinstance(node, cst.AugAssign):
            self.aug_assign(node)
        elif isinstance(node, cst.Expr):
            self.ev(node.value)
        elif isinstance(node, cst.Return):
            value = self.grad_ctx(self.ev(node.value)) if node.value is not None else Lit(None)
            if node.value is not None:
                self.event(RETURN, "return", value, node.value)
            self.returns.append((self.pc, value))
            self.terminated = True
        elif isinstance(node, cst.Raise):
            self.returns.append((self.pc, Dead(self.ctx.loc(node), "raise")))
            self.terminated = True
        elif isinstance(node, (cst.Import, cst.ImportFrom)):
            self.ctx.add_import(node, self.local_imports)
        elif isinstance(node, cst.Assert):
            self.ev(node.test)
        elif isinstance(node, cst.Del):
            pass

    # --------------------------------------------------------------------------- assignment
    def grad_ctx(self, value: Expr) -> Expr:
        if self.no_grad and is_tensorish(value) and not isinstance(value, (Const, Dead, Struct)):
            return ir.sg(value)
        if self.no_grad and isinstance(value, Struct):
            return Struct(tuple((k, ir.sg(v) if is_tensorish(v) and not isinstance(v, Const) else v)
                                for k, v in value.items))
        return value

    def assign(self, target, value: Expr, value_node) -> None:
        if isinstance(target, cst.Name):
            name = target.value
            value = self.tag(name, self.bounded(value), value_node)
            self.env[name] = value
            self.event(ASSIGN, name, value, value_node)
        elif isinstance(target, (cst.Tuple, cst.List)):
            elems = [e.value for e in target.elements]
            star = [i for i, e in enumerate(target.elements) if isinstance(e, cst.StarredElement)]
            for i, el in enumerate(elems):
                if star and i >= star[0]:
                    item = Opaque("starred")
                else:
                    item = self.index(value, Const(float(i)), None)
                self.assign(el, item, value_node)
        elif isinstance(target, cst.Attribute):
            base = dotted(target.value)
            key = f"{base}.{target.attr.value}" if base else target.attr.value
            if base == "self" or (base and base.startswith("self.")):
                self.env[key] = value
            else:
                owner = self.ev(target.value)
                if isinstance(owner, Struct) and base in self.env:
                    self.env[base] = _struct_set(owner, target.attr.value, value)
            self.event(STORE, key, value, value_node)
        elif isinstance(target, cst.Subscript):
            base_name = dotted(target.value)
            keyv = self.subscript_key(target)
            keytxt = self.ctx_code(target)
            if base_name is not None and keyv is not None:
                base_val = self.env.get(base_name)
                if isinstance(base_val, Struct):
                    self.env[base_name] = _struct_set(base_val, keyv, value)
                elif base_val is None or isinstance(base_val, (Param, Opaque)) or base_name.startswith("self."):
                    self.env[f"{base_name}[{keyv!r}]"] = value
            self.event(STORE, keytxt, value, value_node)
        elif isinstance(target, cst.StarredElement):
            self.assign(target.value, Opaque("starred"), value_node)

    def tag(self, name: str, value: Expr, node) -> Expr:
        """Remember the name a value was given when the name says what it is (a log-prob, a mask,
        a reward, a KL): classification falls back on it when provenance says nothing."""
        if isinstance(value, (Const, Lit, Ref, Struct, Dead)):
            return value
        if isinstance(value, Op) and value.op == "named":
            return value
        if isinstance(value, Opaque) and value.grad is False:
            return value  # a Python scalar (.item(), float()): a number, not a tensor
        if (vocab.logp_role(name) or vocab.is_mask_name(name) or vocab.is_reward_name(name)
                or vocab.is_kl_name(name) or vocab.is_loss_name(name)):
            return Op("named", (Lit(name), value), self.ctx.loc(node))
        return value

    def aug_assign(self, node) -> None:
        opmap = {cst.AddAssign: "+", cst.SubtractAssign: "-", cst.MultiplyAssign: "*", cst.DivideAssign: "/"}
        opname = None
        for k, v in opmap.items():
            if isinstance(node.operator, k):
                opname = v
        rhs = self.grad_ctx(self.ev(node.value))
        cur = self.ev(node.target)
        loc = self.ctx.loc(node)
        if opname == "+":
            new = ir.add(cur, rhs, loc=loc)
        elif opname == "-":
            new = ir.sub(cur, rhs, loc=loc)
        elif opname == "*":
            new = ir.mul(cur, rhs, loc=loc)
        elif opname == "/":
            new = ir.div(cur, rhs, loc=loc)
        else:
            new = Op("fn:augop", (cur, rhs), loc)
        target = node.target
        if isinstance(target, cst.Name):
            self.env[target.value] = new
            name = target.value
        else:
            name = self.ctx_code(target)
            if isinstance(target, cst.Attribute) and dotted(target) and dotted(target).startswith("self."):
                self.env[dotted(target)] = new
            elif isinstance(target, cst.Subscript):
                base_name = dotted(target.value)
                keyv = self.subscript_key(target)
                if base_name is not None and keyv is not None:
                    base_val = self.env.get(base_name)
                    if isinstance(base_val, Struct):
                        self.env[base_name] = _struct_set(base_val, keyv, new)
                    else:
                        self.env[f"{base_name}[{keyv!r}]"] = new
        self.events.append(Event(ASSIGN if isinstance(target, cst.Name) else STORE, name, rhs, self.ctx.loc(node.value),
                                 self.stmt_range, aug=opname, conds=self.pc, no_grad=bool(self.no_grad)))

    # --------------------------------------------------------------------------- control flow
    def option_cond(self, test) -> Cond:
        c = self._cond(test)
        if c is None:
            return Cond("unknown", None, (self.ctx_code(test)[:80],))
        return c

    def _cond(self, test) -> Optional[Cond]:
        if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
            c = self._cond(test.expression)
            return c.negate() if c is not None else None
        if isinstance(test, cst.BooleanOperation):
            a = self._cond(test.left)
            b = self._cond(test.right)
            if a is None or b is None:
                return None
            kind = "and" if isinstance(test.operator, cst.And) else "or"
            return Cond(kind, None, (a, b))
        if isinstance(test, cst.Comparison) and len(test.comparisons) == 1:
            comp = test.comparisons[0]
            left, right = test.left, comp.comparator
            lit = _lit_of(right)
            other = left
            if lit is _NO:
                lit = _lit_of(left)
                other = right
            if lit is _NO:
                return None
            key = self.option_key(other)
            if key is None:
                return None
            opn = comp.operator
            if isinstance(opn, (cst.Equal, cst.Is)):
                return Cond("in", key, (lit,))
            if isinstance(opn, (cst.NotEqual, cst.IsNot)):
                return Cond("in", key, (lit,), True)
            if isinstance(opn, cst.In) and isinstance(lit, tuple) and other is left:
                return Cond("in", key, lit)
            if isinstance(opn, cst.NotIn) and isinstance(lit, tuple) and other is left:
                return Cond("in", key, lit, True)
            return None
        if isinstance(test, cst.Call) and isinstance(test.func, cst.Attribute):
            meth = test.func.attr.value
            if meth in ("endswith", "startswith") and len(test.args) == 1:
                lit = _lit_of(test.args[0].value)
                key = self.option_key(test.func.value)
                if isinstance(lit, str) and key is not None:
                    return Cond(meth, key, (lit,))
                if isinstance(lit, tuple) and key is not None and lit:
                    return Cond("or", None, tuple(Cond(meth, key, (s,)) for s in lit))
            return None
        key = self.option_key(test)
        if key is not None:
            return Cond("truthy", key, ())
        return None

    def option_key(self, node) -> Optional[OptionKey]:
        """An option is a parameter, a config attribute, or a self attribute holding a literal."""
        v = self.ev_quiet(node)
        text = self.ctx_code(node)
        if isinstance(v, Param):
            return OptionKey("param", v.name, text, v.default)
        if isinstance(v, Ref) and v.kind == "config":
            return OptionKey("config", v.name, text)
        if isinstance(v, Choice):
            return None
        if isinstance(v, Lit):
            return OptionKey("name", text, text, v)
        d = dotted(node)
        if d and (d.startswith("self.") or isinstance(v, (Opaque, ir.Scale))):
            return OptionKey("name", d, d)
        return None

    def if_stmt(self, node) -> None:
        cond = self.option_cond(node.test)
        self.ev_quiet(node.test)  # events inside the test (rare)
        saved_env, saved_pc = dict(self.env), self.pc
        self.pc = saved_pc + (cond,)
        self.block(node.body.body)
        env_t, term_t = self.env, self.terminated
        self.env, self.terminated, self.pc = dict(saved_env), False, saved_pc + (cond.negate(),)
        if isinstance(node.orelse, cst.If):
            self.stmt(node.orelse)
        elif isinstance(node.orelse, cst.Else):
            self.block(node.orelse.body.body)
        env_f, term_f = self.env, self.terminated
        pc_f = self.pc
        if term_t and term_f:
            self.terminated = True
            self.pc = saved_pc
            return
        self.terminated = False
        if term_t:
            self.env, self.pc = env_f, pc_f
            return
        if term_f:
            self.env, self.pc = env_t, saved_pc + (cond,)
            return
        self.pc = saved_pc
        self.env = _merge(cond, env_t, env_f, self.ctx.loc(node))

    def loop(self, node) -> None:
        if isinstance(node, cst.For):
            it = self.ev(node.iter)
            if isinstance(it, Struct) and it.items:
                self.assign(node.target, it.items[0][1], node.iter)
            else:
                self.bind_element(node.target, it)
        else:
            self.ev_quiet(node.test)
        saved_term = self.terminated
        self.block(node.body.body)
        self.terminated = saved_term  # the loop may run zero times
        if node.orelse is not None:
            self.block(node.orelse.body.body)
            self.terminated = saved_term

    def with_stmt(self, node) -> None:
        ng = 0
        eg = False
        for item in node.items:
            call = item.item
            fn = call.func if isinstance(call, cst.Call) else call
            q = self.qualify(dotted(fn) or "") or (dotted(fn) or "")
            if q in T.NO_GRAD_CONTEXTS or _last(q) in ("no_grad", "inference_mode"):
                ng += 1
            elif q in T.ENABLE_GRAD_CONTEXTS or _last(q) == "enable_grad":
                eg = True
            elif _last(q) == "set_grad_enabled" and isinstance(call, cst.Call) and call.args:
                if _lit_of(call.args[0].value) is False:
                    ng += 1
            else:
                v = self.ev(call)
                if item.asname is not None:
                    self.assign(item.asname.name, v, call)
        saved = self.no_grad
        if eg:
            self.no_grad = 0
        self.no_grad += ng
        self.block(node.body.body)
        self.no_grad = saved

    def try_stmt(self, node) -> None:
        saved_env = dict(self.env)
        self.block(node.body.body)
        body_term = self.terminated
        for h in node.handlers:
            self.terminated = False
            env_before = self.env
            self.env = _merge(Cond("unknown", None, ("exception",)), dict(saved_env), env_before, None)
            self.block(h.body.body)
            if self.terminated:
                self.env = env_before
        self.terminated = body_term
        if node.orelse is not None and not self.terminated:
            self.block(node.orelse.body.body)
        if node.finalbody is not None:
            t = self.terminated
            self.terminated = False
            self.block(node.finalbody.body.body)
            self.terminated = self.terminated or t

    # =========================================================================== events
    def event(self, kind: str, target: str, value: Expr, node) -> None:
        if isinstance(value, (Lit, Ref)) and kind != RETURN:
            return
        self.events.append(Event(kind, target, value, self.ctx.loc(node), self.stmt_range, conds=self.pc,
                                 no_grad=bool(self.no_grad)))

    # =========================================================================== expressions
    def ctx_code(self, node) -> str:
        try:
            return cst.Module(body=[]).code_for_node(node)
        except Exception:
            return "?"

    def ev_quiet(self, node) -> Expr:
        n = len(self.events)
        v = self.ev(node)
        del self.events[n:]
        return v

    def ev(self, node) -> Expr:
        try:
            return self._ev(node)
        except RecursionError:
            return Opaque("deep")

    def bounded(self, v: Expr) -> Expr:
        """Values kept in the environment stay below a size budget (x = x + x in a loop doubles)."""
        if isinstance(v, (Op, Choice)) and ir.size(v, MAX_EXPR + 1) > MAX_EXPR:
            return Opaque("too-large")
        return v

    def _ev(self, node) -> Expr:
        if isinstance(node, cst.Name):
            return self.name(node.value, node)
        if isinstance(node, (cst.Integer, cst.Float)):
            v = _lit_of(node)
            return Const(float(v)) if v is not _NO else Opaque("number")
        if isinstance(node, (cst.SimpleString, cst.ConcatenatedString)):
            v = _lit_of(node)
            return Lit(v) if v is not _NO else Opaque("string")
        if isinstance(node, cst.FormattedString):
            for part in node.parts:
                if isinstance(part, cst.FormattedStringExpression):
                    self.ev(part.expression)
            return Opaque("fstring")
        if isinstance(node, cst.Attribute):
            return self.attribute(node)
        if isinstance(node, cst.Call):
            return self.call(node)
        if isinstance(node, cst.BinaryOperation):
            return self.binop(node)
        if isinstance(node, cst.UnaryOperation):
            v = self.ev(node.expression)
            if isinstance(node.operator, cst.Minus):
                return ir.neg(v, loc=self.ctx.loc(node))
            if isinstance(node.operator, cst.Plus):
                return v
            return Opaque("not")
        if isinstance(node, cst.Subscript):
            return self.subscript(node)
        if isinstance(node, (cst.Tuple, cst.List)):
            items = []
            for i, el in enumerate(node.elements):
                if isinstance(el, cst.StarredElement):
                    self.ev(el.value)
                    return Opaque("starred-seq")
                v = self.ev(el.value)
                if isinstance(v, (Op, Param, Leaf)):
                    v = Op("at", (v,), self.ctx.loc(el.value))
                items.append((i, v))
            return Struct(tuple(items))
        if isinstance(node, cst.Dict):
            items = []
            for el in node.elements:
                if isinstance(el, cst.DictElement):
                    k = _lit_of(el.key)
                    v = self.ev(el.value)
                    if k is not _NO:
                        items.append((k, v))
                else:
                    self.ev(el.value)
            return Struct(tuple(items))
        if isinstance(node, cst.IfExp):
            cond = self.option_cond(node.test)
            a = self.ev(node.body)
            b = self.ev(node.orelse)
            if a is b:
                return a
            return Choice(((cond, a), (None, b)), self.ctx.loc(node))
        if isinstance(node, cst.Comparison):
            left = self.ev(node.left)
            vals = [left]
            for comp in node.comparisons:
                vals.append(self.ev(comp.comparator))
            loc = self.ctx.loc(node)
            ordering = any(isinstance(c.operator, (cst.LessThan, cst.GreaterThan, cst.LessThanEqual,
                                                   cst.GreaterThanEqual)) for c in node.comparisons)
            if ordering:
                for v in vals:
                    if is_tensorish(v) and not isinstance(v, Const):
                        self.events.append(Event(MASK, "compare", v, loc, self.stmt_range, conds=self.pc,
                                                 no_grad=bool(self.no_grad)))
            return Op("fn:compare", tuple(v for v in vals if is_tensorish(v)), loc)
        if isinstance(node, cst.BooleanOperation):
            a = self.ev(node.left)
            b = self.ev(node.right)
            return Op("fn:boolop", (a, b), self.ctx.loc(node))
        if isinstance(node, cst.NamedExpr):
            v = self.ev(node.value)
            self.assign(node.target, v, node.value)
            return v
        if isinstance(node, cst.Await):
            return self.ev(node.expression)
        if isinstance(node, (cst.ListComp, cst.GeneratorExp, cst.SetComp)):
            return self.comprehension(node)
        if isinstance(node, cst.DictComp):
            return Opaque("comprehension")
        if isinstance(node, cst.Lambda):
            return Opaque("lambda")
        if isinstance(node, cst.Ellipsis):
            return Lit(Ellipsis)
        if isinstance(node, cst.Set):
            return Opaque("set")
        if isinstance(node, cst.StarredElement):
            return self.ev(node.value)
        return Opaque(type(node).__name__)

    def comprehension(self, node) -> Expr:
        """``[f(x) for x in xs]``: the per-element value f(x), with x standing for an element of xs
        (a slice of a batch keeps its tokens' values)."""
        saved = dict(self.env)
        try:
            comp = node.for_in
            while comp is not None:
                it = self.ev(comp.iter)
                self.bind_element(comp.target, it)
                comp = comp.inner_for_in
            return self.ev(node.elt)
        finally:
            self.env = saved

    def bind_element(self, target, it: Expr) -> None:
        if isinstance(it, Op) and it.op.startswith("fn:") and it.op[3:] in ("enumerate", "zip") and \
                isinstance(target, (cst.Tuple, cst.List)):
            elems = [e.value for e in target.elements]
            parts = list(it.args)
            if it.op == "fn:enumerate":
                parts = [Opaque("index")] + parts
            for el, part in zip(elems, parts):
                self.bind_element(el, part)
            return
        if isinstance(target, cst.Name):
            self.env[target.value] = it if is_tensorish(it) else Opaque("element")
        elif isinstance(target, (cst.Tuple, cst.List)):
            for el in target.elements:
                self.bind_element(el.value, Opaque("element"))

    def name(self, name: str, node) -> Expr:
        if name in self.env:
            return self.env[name]
        if name in ("True", "False", "None"):
            return Lit({"True": True, "False": False, "None": None}[name])
        q = self.qualify(name)
        if q is not None:
            if name in self.ctx.functions or name in self.ctx.classes or q != name:
                return Ref("func", q)
            return Ref("module", q)
        if name in BUILTINS:
            return Ref("builtin", name)
        if name == "self":
            return SELF
        return self.free_name(name, node)

    def free_name(self, name: str, node) -> Expr:
        """A name read but never assigned in this function (a global): decided by its name later."""
        return Op("name", (Lit(name),), self.ctx.loc(node))

    def attribute(self, node) -> Expr:
        attr = node.attr.value
        d = dotted(node)
        if d and d in self.env:
            return self.env[d]
        cfg = config_path(d) if d else None
        if cfg is not None and not (d.split(".")[0] in self.env and isinstance(self.env[d.split(".")[0]],
                                                                             (Struct, Leaf, Const))):
            return Ref("config", cfg)
        base = self.ev(node.value)
        loc = self.ctx.loc(node)
        if isinstance(base, Ref):
            if base.kind in ("module", "func"):
                return Ref("func", f"{base.name}.{attr}")
            if base.kind == "config":
                return Ref("config", f"{base.name}.{attr}" if base.name else attr)
            if base.kind == "self":
                if vocab.is_config_root(attr):
                    return Ref("config", "", role=f"self.{attr}")
                return Op("getattr", (SELF, Lit(attr)), loc)
            if base.kind == "model":
                return base
            if base.kind == "builtin":
                return Opaque(attr)
        if isinstance(base, Struct):
            v = base.get(attr)
            if v is not None:
                return v
        if isinstance(base, (Op, Param)) and attr in ("data",):
            return ir.sg(base, loc)
        if attr in ("logits", "T", "mT", "real"):
            return base
        if attr in ("shape", "dtype", "device", "ndim", "requires_grad", "is_cuda", "grad_fn"):
            return Opaque(attr)
        return Op("getattr", (base, Lit(attr)), loc)

    def subscript_key(self, node) -> Optional[object]:
        if len(node.slice) != 1:
            return None
        el = node.slice[0].slice
        if isinstance(el, cst.Index):
            v = _lit_of(el.value)
            if v is not _NO and not isinstance(v, tuple):
                return v
        return None

    def subscript(self, node) -> Expr:
        base = self.ev(node.value)
        loc = self.ctx.loc(node)
        key = self.subscript_key(node)
        if key is not None:
            d = dotted(node.value)
            if d is not None and f"{d}[{key!r}]" in self.env:
                return self.env[f"{d}[{key!r}]"]
            return self.index(base, Const(float(key)) if isinstance(key, int) and not isinstance(key, bool)
                              else Lit(key), loc)
        # a slice or tensor index: the same tokens (shifted, masked or selected)
        if len(node.slice) == 1 and isinstance(node.slice[0].slice, cst.Index):
            idx_node = node.slice[0].slice.value
            idx = self.ev(idx_node)
            key = self.option_key(idx_node) if isinstance(idx, (Param, Ref)) else None
            if key is not None:
                return Op("select", (base, Lit(key)), loc)
            if isinstance(base, Struct):
                return self.index(base, idx, loc)
        else:
            for el in node.slice:
                s = el.slice
                if isinstance(s, cst.Index):
                    self.ev(s.value)
        return base

    def index(self, base: Expr, key: Expr, loc: Optional[Loc]) -> Expr:
        if isinstance(base, Struct):
            k = key.value if isinstance(key, (Lit,)) else (int(key.value) if isinstance(key, Const) else None)
            if k is not None:
                v = base.get(k)
                if v is not None:
                    return v
            if isinstance(key, Choice) or isinstance(key, Param) or (isinstance(key, Ref) and key.kind == "config"):
                return Op("select", (base, key), loc)
            return Op("select", (base, key), loc)
        if isinstance(base, Choice):
            return base.rebuild(tuple(self.index(b, key, loc) for b in base.children()))
        if isinstance(base, Ref) and base.kind == "model":
            return base
        if isinstance(key, Const) and isinstance(base, Op) and base.op == "fn:model":
            return base
        return Op("getitem", (base, key), loc)

    def binop(self, node) -> Expr:
        a = self.ev(node.left)
        b = self.ev(node.right)
        loc = self.ctx.loc(node)
        o = node.operator
        if isinstance(o, cst.Add):
            return ir.add(a, b, loc=loc)
        if isinstance(o, cst.Subtract):
            return ir.sub(a, b, loc=loc)
        if isinstance(o, cst.Multiply):
            return ir.mul(a, b, loc=loc)
        if isinstance(o, cst.Divide):
            return ir.div(a, b, loc=loc)
        if isinstance(o, cst.Power):
            return Op("pow", (a, b), loc)
        if isinstance(o, cst.FloorDivide):
            return Op("fn:floordiv", (a, b), loc)
        if isinstance(o, cst.BitAnd) or isinstance(o, cst.BitOr):
            return Op("fn:maskop", (a, b), loc)
        return Op("fn:binop", (a, b), loc)

    # =========================================================================== calls
    def call(self, node) -> Expr:
        func = node.func
        loc = self.ctx.loc(node)
        if isinstance(func, cst.Attribute) and func.attr.value in ("add_argument", "get") or \
                isinstance(func, cst.Name) and func.value == "getattr":
            self.config_defaults.extend(configs.from_call(self.ctx, node))
        args = []
        kwargs = []
        for a in node.args:
            if a.star:
                self.ev(a.value)
                continue
            v = self.ev(a.value)
            if a.keyword is not None:
                kwargs.append((a.keyword.value, v))
            else:
                args.append(v)
        kw = dict(kwargs)
        if isinstance(func, cst.Attribute):
            meth = func.attr.value
            recv_d = dotted(func.value)
            recv = self.ev(func.value)
            return self.method_call(node, recv, recv_d, meth, args, kwargs, kw, loc)
        fval = self.ev(func)
        fname = dotted(func) or ""
        return self.function_call(node, fval, fname, args, kwargs, kw, loc)

    def method_call(self, node, recv, recv_d, meth, args, kwargs, kw, loc) -> Expr:
        if isinstance(recv, Ref) and recv.kind in ("module", "func"):
            return self.function_call(node, Ref("func", f"{recv.name}.{meth}"), f"{recv_d}.{meth}", args, kwargs,
                                      kw, loc)
        if isinstance(recv, Ref) and recv.kind == "self":
            return self.self_call(meth, args, kwargs, loc, f"self.{meth}")
        if isinstance(recv, Ref) and recv.kind == "builtin":
            return Opaque(meth)
        if isinstance(recv, Ref) and recv.kind == "super" and self.class_qual:
            return Call((f"super:{self.class_qual}.{meth}",), tuple(args), tuple(kwargs), loc, f"super().{meth}")
        # ----- sinks reached through method calls
        if meth == "backward":
            if args and is_tensorish(args[0]) and recv_d is not None and not _tensor_like(recv):
                self._ev_sink(BACKWARD, f"{recv_d}.backward", args[0], node.args[0].value)
            elif is_tensorish(recv):
                self._ev_sink(BACKWARD, "backward", recv, node.func.value)
            return Opaque("backward")
        if meth in ("scale",) and recv_d and "scaler" in recv_d.lower() and args:
            return args[0]
        if meth in T.SCALAR_OUT and is_tensorish(recv):
            self._ev_sink(METRIC, meth, recv, node.func.value)
            return Opaque(meth, grad=False)
        if meth == "update" and recv_d is not None and _is_controller(recv_d) and args:
            self._ev_sink(CONTROLLER, f"{recv_d}.update", args[0], node.args[0].value)
            return Opaque("update")
        if recv_d is not None and (vocab.is_metric_name(recv_d.split(".")[-1]) or _is_metrics_path(recv_d)) and \
                meth in ("update", "append", "extend", "add", "log", "__setitem__", "setdefault", "record", "put"):
            for i, v in enumerate(args):
                self._metric_values(v, node.args[i].value if i < len(node.args) else node)
            for _, v in kwargs:
                self._metric_values(v, node)
            return Opaque(meth)
        if meth in LOG_CALL_NAMES and recv_d is not None and not _tensor_like(recv):
            for i, v in enumerate(args):
                self._metric_values(v, node.args[i].value if i < len(node.args) else node)
            for _, v in kwargs:
                self._metric_values(v, node)
            return Opaque(meth)
        if meth == "append" and recv_d is not None and isinstance(recv, (Op, Opaque)):
            # list.append into a metrics-like container path (self._metrics[mode]["kl"].append)
            if _is_metrics_path(recv_d) or vocab.is_metric_name(recv_d):
                for i, v in enumerate(args):
                    self._metric_values(v, node.args[i].value)
            return Opaque("append")
        if meth == "get" and isinstance(recv, (Struct,)) and args and isinstance(args[0], Lit):
            v = recv.get(args[0].value)
            return v if v is not None else (args[1] if len(args) > 1 else Lit(None))
        if meth == "get" and args and isinstance(args[0], Lit) and isinstance(args[0].value, str):
            d = recv_d
            if d is not None and f"{d}[{args[0].value!r}]" in self.env:
                return self.env[f"{d}[{args[0].value!r}]"]
            if isinstance(recv, Ref) and recv.kind == "config":
                return Ref("config", f"{recv.name}.{args[0].value}" if recv.name else args[0].value)
            if recv_d and vocab.is_config_root(recv_d.split(".")[-1]):
                return Ref("config", args[0].value)
            return self.index(recv, Lit(args[0].value), loc)
        # ----- tensor semantics
        if isinstance(recv, Ref) and recv.kind == "config":
            return Opaque(meth)
        t = self.tensor_method(recv, meth, args, kw, loc)
        if t is not None:
            return t
        # ----- a model forward (self.ref_model(...) is a call, self.ref_model.forward(...) a method)
        if meth in ("forward", "__call__", "generate_logits") and recv_d is not None:
            role = vocab.model_role(recv_d.split(".")[-1])
            if role is not None:
                return Op("fn:model", (Ref("model", recv_d, role),), loc)
        # ----- methods on unknown objects: keep arguments so taint is not lost
        if recv_d is not None and recv_d.startswith("self.") and recv_d.count(".") >= 1:
            # self.helper.method(...) - an attribute object's method; unknown
            pass
        return self.unknown_call(f"{recv_d}.{meth}" if recv_d else meth, meth, [recv] + args, kwargs, loc)

    def _ev_sink(self, kind: str, target: str, value: Expr, node) -> None:
        self.events.append(Event(kind, target, value, self.ctx.loc(node), self.stmt_range, conds=self.pc,
                                 no_grad=bool(self.no_grad)))

    def _metric_values(self, v: Expr, node) -> None:
        if isinstance(v, Struct):
            for k, item in v.items:
                if is_tensorish(item) and not isinstance(item, (Const, Opaque)):
                    self._ev_sink(METRIC, str(k), item, node)
        elif is_tensorish(v) and not isinstance(v, (Const, Opaque)):
            self._ev_sink(METRIC, "log", v, node)

    def self_call(self, meth: str, args, kwargs, loc, display: str) -> Expr:
        target = f"method:{self.class_qual}.{meth}" if self.class_qual else f"{self.ctx.module}.{meth}"
        if self.class_qual is None:
            return self.unknown_call(display, meth, args, kwargs, loc)
        role = vocab.model_role(meth)
        if role is not None and meth not in _method_names(self.ctx, self.class_qual):
            # self.ref_model(...) where ref_model is an attribute holding a module
            return Op("fn:model", (Ref("model", f"self.{meth}", role),), loc)
        return Call((target,), tuple(args), tuple(kwargs), loc, display)

    def function_call(self, node, fval, fname, args, kwargs, kw, loc) -> Expr:
        if isinstance(fval, Ref) and fval.kind == "builtin":
            b = fval.name
            if b == "float" and args:
                self._ev_sink(METRIC, "float", args[0], node.args[0].value)
                return Opaque("float", grad=False)
            if b in ("abs",) and args:
                return Op("abs", (args[0],), loc)
            if b in ("sum",) and args:
                return Op("agg", (args[0],), loc)
            if b in ("min", "max") and len(args) == 2:
                return Op(b, (args[0], args[1]), loc)
            if b == "getattr" and len(args) >= 2 and isinstance(args[1], Lit):
                if isinstance(args[0], Ref) and args[0].kind == "config":
                    return Ref("config", f"{args[0].name}.{args[1].value}" if args[0].name else str(args[1].value))
                return Op("getattr", (args[0], args[1]), loc)
            if b == "super":
                return Ref("super", self.class_qual or "")
            if b in ("enumerate", "zip", "reversed", "list", "tuple", "sorted", "iter") and args:
                if b in ("list", "tuple", "reversed", "sorted", "iter") and len(args) == 1:
                    return args[0]
                return Op(f"fn:{b}", tuple(args), loc)
            if b in ("print",):
                return Opaque("print")
            return Opaque(b)
        if isinstance(fval, Ref) and fval.kind == "func":
            q = fval.name
            mod, fn = T.split_qual(q)
            if T.is_tensor_module(mod) or mod == "":
                t = self.tensor_function(q, mod, fn, args, kw, loc)
                if t is not None:
                    return t
            if mod == "" and fn in ("print",):
                return Opaque(fn)
            # a function of the linted tree (or an unknown library): the linker decides
            kwlocs = tuple((a.keyword.value, self.ctx.loc(a)) for a in node.args if a.keyword is not None)
            return Call((q,), tuple(args), tuple(kwargs), loc, fname or q, kwlocs)
        if isinstance(fval, Ref) and fval.kind == "model":
            return Op("fn:model", (fval,), loc)
        if isinstance(fval, Ref) and fval.kind == "super":
            return Opaque("super")
        if isinstance(fval, Op) and fval.op == "getattr" and fval.args[0] is SELF:
            meth = fval.args[1].value
            return self.self_call(meth, args, kwargs, loc, f"self.{meth}")
        if isinstance(fval, Param) or (isinstance(fval, Op) and fval.op in ("getattr", "name", "select", "getitem")):
            nm = fname.split(".")[-1] if fname else ""
            role = vocab.model_role(nm) if nm else None
            if isinstance(fval, Param) and role is not None:
                return Op("fn:model", (fval,), loc)
            if role is not None and isinstance(fval, Op) and fval.op in ("getattr", "name"):
                return Op("fn:model", (Ref("model", fname, role),), loc)
            return Op("dyncall", (fval,) + tuple(args), loc)
        if isinstance(fval, Choice):
            return Op("dyncall", (fval,) + tuple(args), loc)
        return self.unknown_call(fname, fname.split(".")[-1] if fname else "", args, kwargs, loc)

    def unknown_call(self, display: str, short: str, args, kwargs, loc) -> Expr:
        low = short.lower()
        tensor_args = [a for a in args if is_tensorish(a) and not isinstance(a, Const)]
        tensor_args += [v for _, v in kwargs if is_tensorish(v) and not isinstance(v, Const)]
        if not tensor_args:
            return Opaque(short or "call")
        if _is_aggregator(low) and tensor_args:
            first = tensor_args[0]
            rest = [ir.Op("fn:aggweight", (a,)) for a in tensor_args[1:2]]
            return Op("agg", (ir.mul(first, *rest) if rest else first,) + ((Lit("mean"),) if "mean" in low else ()),
                      loc)
        return Op(f"fn:{short or 'call'}", tuple(tensor_args), loc)

    # --------------------------------------------------------------------------- tensor semantics
    def tensor_method(self, recv, meth, args, kw, loc) -> Optional[Expr]:
        if not is_tensorish(recv):
            return None
        if meth in ("size", "dim", "numel", "stride", "ndimension", "nelement", "element_size", "get_device",
                    "data_ptr", "is_contiguous", "is_floating_point", "isfinite", "isnan", "isinf", "any", "all",
                    "storage_offset", "new_zeros", "new_ones", "new_empty", "new_full", "new_tensor"):
            return Opaque(meth, grad=False)
        if meth in T.DETACH:
            return ir.sg(recv, loc)
        if meth in ("masked_fill", "masked_fill_") and args and is_tensorish(args[0]):
            # positions under the mask get a constant: the value is masked there
            return ir.mul(recv, Leaf(ir.MASK, "masked_fill", False, "masked_fill", "high", None), loc=loc)
        if meth in T.IDENTITY_METHODS:
            return recv
        if meth in T.UNARY or meth.rstrip("_") in T.UNARY:
            return self.unary(T.UNARY.get(meth, T.UNARY.get(meth.rstrip("_"))), recv, loc)
        if meth in ("pow", "pow_", "__pow__") and args:
            return Op("pow", (recv, args[0]), loc)
        if meth in T.CLAMP:
            return self.clamp(meth, recv, args, kw, loc)
        if meth in T.REDUCE:
            return Op("agg", (recv, Lit("mean")) if "mean" in meth else (recv,), loc)
        if meth in ("mul", "mul_", "multiply") and args:
            return ir.mul(recv, args[0], loc=loc)
        if meth in ("div", "div_", "divide", "true_divide") and args:
            return ir.div(recv, args[0], loc=loc)
        if meth in ("add", "add_") and args:
            other = args[0]
            if "alpha" in kw:
                other = ir.mul(kw["alpha"], other)
            return ir.add(recv, other, loc=loc)
        if meth in ("sub", "sub_", "subtract") and args:
            other = args[0]
            if "alpha" in kw:
                other = ir.mul(kw["alpha"], other)
            return ir.sub(recv, other, loc=loc)
        if meth in ("log_softmax",):
            return Op("logsoftmax", (recv,), loc)
        if meth in ("softmax",):
            return Op("softmax", (recv,), loc)
        if meth == "gather":
            return Op("gather", (recv,), loc)
        if meth in T.SMOOTH_OPAQUE:
            return Op(f"fn:{meth}", (recv,), loc)
        if meth in ("max", "min", "amax", "amin") and args and is_tensorish(args[0]) and not isinstance(args[0], Const):
            return Op(meth.lstrip("a"), (recv, args[0]), loc)
        if meth in ("max", "min", "amax", "amin", "std", "var", "norm", "median", "argmax", "argmin", "count_nonzero"):
            return Op(f"fn:{meth}", (recv,), loc)
        if meth in ("where",) and len(args) >= 2:
            return Op("where", (recv, args[1]), loc)
        return None

    def tensor_function(self, q, mod, fn, args, kw, loc) -> Optional[Expr]:
        x = args[0] if args else kw.get("input", kw.get("x"))
        if fn in T.UNARY and x is not None:
            return self.unary(T.UNARY[fn], x, loc)
        if fn in T.CLAMP and x is not None:
            return self.clamp(fn, x, args[1:], kw, loc)
        if fn in T.REDUCE and x is not None:
            return Op("agg", (x, Lit("mean")) if "mean" in fn else (x,), loc)
        if fn in ("pow", "float_power") and len(args) >= 2:
            return Op("pow", (args[0], args[1]), loc)
        if fn in ("log_softmax",) and x is not None:
            return Op("logsoftmax", (x,), loc)
        if fn in ("softmax",) and x is not None:
            return Op("softmax", (x,), loc)
        if fn == "gather" and x is not None:
            return Op("gather", (x,), loc)
        if fn in ("exp_",) and x is not None:
            return Op("exp", (x,), loc)
        if fn == "kl_div" and len(args) + len(kw) >= 2:
            inp = args[0] if args else kw.get("input")
            tgt = args[1] if len(args) > 1 else kw.get("target")
            log_target = kw.get("log_target")
            lt = isinstance(log_target, Lit) and log_target.value is True
            if inp is None or tgt is None:
                return None
            tgt_log = tgt if lt else Op("log", (tgt,))
            return Op("fullkl", (tgt_log, inp), loc)
        if fn in ("where",) and len(args) >= 3:
            return Op("where", (args[1], args[2]), loc)
        if fn in ("maximum", "max", "fmax") and len(args) >= 2 and is_tensorish(args[1]):
            return Op("max", (args[0], args[1]), loc)
        if fn in ("minimum", "min", "fmin") and len(args) >= 2 and is_tensorish(args[1]):
            return Op("min", (args[0], args[1]), loc)
        if fn in ("stack",) and args and isinstance(args[0], Struct) and args[0].items:
            return args[0]
        if fn in ("zeros_like", "zeros", "full_like") and fn != "full_like":
            return Const(0.0)
        if fn in ("ones_like", "ones"):
            return Const(1.0)
        if fn in ("tensor", "as_tensor", "scalar_tensor") and x is not None:
            return x if isinstance(x, (Const, Op, Param)) else Opaque("tensor")
        if fn == "masked_fill" and x is not None and len(args) >= 2:
            return ir.mul(x, Leaf(ir.MASK, "masked_fill", False, "masked_fill", "high", None), loc=loc)
        if q in T.IDENTITY_FUNCS and x is not None:
            return x
        if fn in T.SMOOTH_OPAQUE and x is not None:
            return Op(f"fn:{fn}", (x,), loc)
        if fn in ("no_grad", "inference_mode", "enable_grad"):
            return Opaque(fn)
        if mod.startswith("torch") or mod.startswith("numpy") or mod == "math":
            tensor_args = [a for a in args if is_tensorish(a) and not isinstance(a, Const)]
            if not tensor_args:
                return Opaque(fn)
            return Op(f"fn:{fn}", tuple(tensor_args), loc)
        return None

    def unary(self, kind: str, x: Expr, loc) -> Expr:
        if kind in ("exp", "log", "abs", "sign"):
            return Op(kind, (x,), loc)
        if kind == "sqrt":
            return Op("pow", (x, Const(0.5)), loc)
        if kind == "square":
            return Op("pow", (x, Const(2.0)), loc)
        if kind == "neg":
            return ir.neg(x, loc)
        if kind == "expm1":
            return ir.add(Op("exp", (x,)), Const(-1.0), loc=loc)
        if kind == "log1p":
            return Op("log", (ir.add(Const(1.0), x),), loc)
        if kind == "reciprocal":
            return Op("pow", (x, Const(-1.0)), loc)
        return Op(f"fn:{kind}", (x,), loc)

    def clamp(self, meth, x, args, kw, loc) -> Expr:
        lo = kw.get("min", args[0] if len(args) > 0 else None)
        hi = kw.get("max", args[1] if len(args) > 1 else None)
        if meth.startswith("clamp_min"):
            lo, hi = (args[0] if args else kw.get("min")), None
        elif meth.startswith("clamp_max"):
            lo, hi = None, (args[0] if args else kw.get("max"))
        none = Lit(None)
        lo = lo if lo is not None else none
        hi = hi if hi is not None else none
        return Op("clamp", (x, lo, hi), loc)


# ============================================================================================ helpers


def config_path(d: str) -> Optional[str]:
    """``self.strategy.args.algo.kl.estimator`` -> ``algo.kl.estimator``: the path after the last
    config-like component (config, args, cfg, ...), if any and if something follows it."""
    parts = d.split(".")
    idx = None
    for i, p in enumerate(parts):
        if i == 0 and p == "self":
            continue
        if vocab.is_config_root(p):
            idx = i
    if idx is None or idx == len(parts) - 1:
        return None
    return ".".join(parts[idx + 1:])


def _merge(cond: Cond, env_t: Dict[str, Expr], env_f: Dict[str, Expr], loc) -> Dict[str, Expr]:
    out = {}
    for k in set(env_t) | set(env_f):
        a, b = env_t.get(k), env_f.get(k)
        if a is None:
            out[k] = b
        elif b is None:
            out[k] = a
        elif a is b or a == b:
            out[k] = a
        else:
            out[k] = Choice(((cond, a), (None, b)), loc)
    return out


def _struct_set(s: Struct, key, value: Expr) -> Struct:
    items = [(k, v) for k, v in s.items if k != key]
    items.append((key, value))
    return Struct(tuple(items))


def _tensor_like(e: Expr) -> bool:
    return isinstance(e, (Op, Leaf, Param)) and not (isinstance(e, Op) and e.op == "getattr" and e.args[0] is SELF)


def _is_controller(d: str) -> bool:
    last = d.split(".")[-1].lower()
    return "ctl" in last or "ctrl" in last or "controller" in last or ("kl" in last and "coef" in last)


def _is_metrics_path(d: str) -> bool:
    parts = [p.lower() for p in d.replace("[", ".").replace("]", "").split(".")]
    return any(vocab.is_metric_name(p) or p.startswith("_metric") for p in parts)


def _is_aggregator(low: str) -> bool:
    from ..classify.roles import is_aggregator

    return is_aggregator(low)


def _method_names(ctx: ModuleContext, class_qual: str) -> set:
    name = class_qual.rsplit(".", 1)[-1]
    node = ctx.classes.get(name)
    if node is None:
        return set()
    out = set()
    for s in node.body.body:
        if isinstance(s, cst.FunctionDef):
            out.add(s.name.value)
    return out
