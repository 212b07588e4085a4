"""IR -> sympy.  Imported only when a term needs deriving (sympy costs about half a second).

Symbols: ``logp`` (the trained policy's log-prob of the sampled token, differentiable), ``ref``
(reference, constant), ``old`` (rollout-time log-prob, constant; equal to logp on-policy),
``teacher``.  ``StopGrad`` keeps a value and has derivative zero; ``Clamp`` keeps a value between
bounds and has derivative one inside them, zero outside: both declared the way sympy's own
functions declare derivatives (``fdiff``).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import sympy as sp

from .. import ir

LOGP, REF, OLD, TEACHER = sp.symbols("logp ref old teacher", real=True)
ELL = sp.Symbol("ell", real=True)  # log(pi/pi_ref)
DELTA = sp.Symbol("delta", positive=True)  # pi_ref/pi
DIST_P, DIST_R, DIST_O, DIST_T = sp.symbols("logpi_v logref_v logold_v logteacher_v", real=True)

ROLE_SYMBOL = {ir.POLICY: LOGP, ir.REF: REF, ir.OLD: OLD, ir.TEACHER: TEACHER}
DIST_SYMBOL = {ir.POLICY: DIST_P, ir.REF: DIST_R, ir.OLD: DIST_O, ir.TEACHER: DIST_T}


class StopGrad(sp.Function):
    """sg(x): value x, derivative 0 (``.detach()``, ``torch.no_grad``)."""

    nargs = 1

    @classmethod
    def eval(cls, x):
        if x.is_number:
            return x
        if isinstance(x, StopGrad):
            return x

    def fdiff(self, argindex=1):
        return sp.S.Zero

    def _eval_derivative(self, s):
        return sp.S.Zero


class Clamp(sp.Function):
    """clamp(x, lo, hi): value min(max(x, lo), hi); derivative 1 strictly inside, 0 outside."""

    nargs = 3

    def fdiff(self, argindex=1):
        x, lo, hi = self.args
        if argindex != 1:
            return sp.S.Zero
        inside = sp.And(x > lo, x < hi) if lo != -sp.oo and hi != sp.oo else (
            (x > lo) if hi == sp.oo else (x < hi))
        if lo == -sp.oo and hi == sp.oo:
            return sp.S.One
        return sp.Piecewise((1, inside), (0, True))


class Unknown(sp.Function):
    """An operation the analysis cannot see into (a user function, an opaque library call)."""


def strip_stopgrad(e):
    return e.replace(lambda x: isinstance(x, StopGrad), lambda x: x.args[0])


def clamp_to_minmax(e):
    return e.replace(lambda x: isinstance(x, Clamp), lambda x: sp.Min(sp.Max(x.args[0], x.args[1]), x.args[2]))


def clamp_to_identity(e):
    return e.replace(lambda x: isinstance(x, Clamp), lambda x: x.args[0])


class Lifter:
    """Convert an IR expression to sympy.  Leaves with the same role map to the same symbol unless
    they are distinct tensors (two different policy leaves get logp and logp_2)."""

    def __init__(self) -> None:
        self.symbols: Dict[Tuple[str, str], sp.Symbol] = {}
        self.role_keys: Dict[str, list] = {}
        self.unknowns = 0
        self.notes: list = []

    def leaf_symbol(self, leaf: ir.Leaf):
        role = leaf.role
        dist = role.startswith(ir.DIST)
        base = role[len(ir.DIST):] if dist else role
        table = DIST_SYMBOL if dist else ROLE_SYMBOL
        if base not in table:
            return None
        keys = self.role_keys.setdefault(role, [])
        if leaf.key not in keys:
            keys.append(leaf.key)
        i = keys.index(leaf.key)
        sym = table[base]
        if i > 0:
            sym = sp.Symbol(f"{sym.name}_{i + 1}", real=True)
        if leaf.grad is False and base == ir.POLICY:
            return StopGrad(sym)
        return sym

    def lift(self, e: ir.Expr):
        if isinstance(e, ir.Const):
            v = e.value
            if float(v).is_integer():
                return sp.Integer(int(v))
            return sp.nsimplify(v, rational=True, tolerance=1e-12) if abs(v) < 1e6 else sp.Float(v)
        if isinstance(e, ir.Scale):
            return sp.Symbol(f"scale_{_clean(e.name)}", positive=True)
        if isinstance(e, ir.Leaf):
            s = self.leaf_symbol(e)
            if s is not None:
                return s
            if e.role == ir.MASK:
                return sp.Integer(1)  # the estimator on the tokens the mask keeps
            self.unknowns += 1
            return sp.Symbol(f"u_{_clean(e.key)}", real=True)
        if isinstance(e, ir.Ref) and e.kind == "config":
            return sp.Symbol(f"cfg_{_clean(e.name or e.role)}", positive=True)
        if isinstance(e, ir.Lit):
            if e.value is None:
                return None
            if isinstance(e.value, bool):
                return sp.Integer(int(e.value))
            raise _Unliftable(f"literal {e.value!r}")
        if isinstance(e, ir.Via):
            return self.lift(e.expr)
        if isinstance(e, ir.Op):
            return self.lift_op(e)
        if isinstance(e, ir.Opaque):
            self.unknowns += 1
            return sp.Symbol(f"u_{_clean(e.name)}", real=True)
        raise _Unliftable(type(e).__name__)

    def lift_op(self, e: ir.Op):
        op = e.op
        if op == "add":
            return sp.Add(*[self.lift(a) for a in e.args])
        if op == "mul":
            return sp.Mul(*[self.lift(a) for a in e.args])
        if op == "pow":
            return sp.Pow(self.lift(e.args[0]), self.lift(e.args[1]))
        if op == "exp":
            return sp.exp(self.lift(e.args[0]))
        if op == "log":
            return sp.log(self.lift(e.args[0]))
        if op == "abs":
            return sp.Abs(self.lift(e.args[0]))
        if op == "sign":
            return sp.sign(self.lift(e.args[0]))
        if op == "sg":
            return StopGrad(self.lift(e.args[0]))
        if op == "agg":
            return self.lift(e.args[0])
        if op == "named":
            return self.lift(e.args[1])
        if op == "at":
            return self.lift(e.args[0])
        if op == "where":
            # torch.where(mask, x, fallback): the value on the tokens that count
            return self.lift(e.args[0])
        if op == "clamp":
            x = self.lift(e.args[0])
            lo = self.lift(e.args[1]) if not _is_none(e.args[1]) else -sp.oo
            hi = self.lift(e.args[2]) if not _is_none(e.args[2]) else sp.oo
            if lo is None:
                lo = -sp.oo
            if hi is None:
                hi = sp.oo
            if not (lo.is_number or lo in (-sp.oo,)) or not (hi.is_number or hi in (sp.oo,)):
                self.notes.append("clamp with non-constant bounds")
            return Clamp(x, lo, hi)
        if op == "max":
            return sp.Max(self.lift(e.args[0]), self.lift(e.args[1]))
        if op == "min":
            return sp.Min(self.lift(e.args[0]), self.lift(e.args[1]))
        if op == "fullkl":
            p, q = self.lift(e.args[0]), self.lift(e.args[1])
            return sp.exp(p) * (p - q)
        if op == "logsoftmax" or op == "gather":
            return self.lift(e.args[0])
        if op == "softmax":
            return sp.exp(self.lift(e.args[0]))
        name = op[3:] if op.startswith("fn:") else op
        self.unknowns += 1
        args = [self.lift(a) for a in e.args]
        args = [a for a in args if a is not None]
        return sp.Function(f"f_{_clean(name)}")(*args) if args else sp.Symbol(f"u_{_clean(name)}", real=True)


class _Unliftable(Exception):
    pass


def _is_none(e: ir.Expr) -> bool:
    return isinstance(e, ir.Lit) and e.value is None


def _clean(s: str) -> str:
    out = "".join(c if c.isalnum() else "_" for c in s)
    return out.strip("_")[:40] or "x"


def lift(e: ir.Expr) -> Tuple[Optional[sp.Expr], Lifter]:
    lf = Lifter()
    try:
        return lf.lift(e), lf
    except _Unliftable as exc:
        lf.notes.append(f"cannot lift: {exc}")
        return None, lf
    except (RecursionError, TypeError, ValueError) as exc:  # pathological expressions
        lf.notes.append(f"cannot lift: {type(exc).__name__}")
        return None, lf
