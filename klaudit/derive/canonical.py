"""A canonical text key for an IR expression: roles instead of names, no locations.

Two terms written differently but lifted to the same expression (``torch.exp(x)`` vs ``x.exp()``)
share one key, so one sympy derivation serves both, in memory and in the on-disk cache.
"""
from __future__ import annotations

from typing import Dict, List

from .. import ir


def canonical(e: ir.Expr) -> str:
    names: Dict[tuple, str] = {}
    counters: Dict[str, int] = {}
    out: List[str] = []

    def leaf_name(leaf: ir.Leaf) -> str:
        k = (leaf.role, leaf.key)
        if k not in names:
            i = counters.get(leaf.role, 0) + 1
            counters[leaf.role] = i
            names[k] = leaf.role if i == 1 else f"{leaf.role}#{i}"
        n = names[k]
        if leaf.grad is False:
            n += "!"
        return n

    def go(x: ir.Expr) -> None:
        if isinstance(x, ir.Const):
            v = x.value
            out.append(repr(int(v)) if float(v).is_integer() else repr(v))
        elif isinstance(x, ir.Scale):
            out.append("S")
        elif isinstance(x, ir.Leaf):
            out.append(leaf_name(x))
        elif isinstance(x, ir.Ref):
            out.append("S" if x.kind == "config" else f"ref:{x.kind}")
        elif isinstance(x, ir.Lit):
            out.append(repr(x.value))
        elif isinstance(x, ir.Opaque):
            out.append(f"?{x.name}")
        elif isinstance(x, ir.Via):
            go(x.expr)
        elif isinstance(x, ir.Op) and x.op in ("named", "at"):
            go(x.args[-1])
        elif isinstance(x, ir.Op):
            out.append(x.op)
            out.append("(")
            for i, a in enumerate(x.args):
                if i:
                    out.append(",")
                go(a)
            out.append(")")
        else:
            out.append(type(x).__name__)

    go(e)
    return "".join(out)
