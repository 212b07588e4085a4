"""How lifted expressions are printed: the notation of klaudit's explanations and documentation.

``sg(x)`` for a stop-gradient, ``clamp(x, lo, hi)``, ``1[lo < x < hi]`` for the indicator a clamp's
derivative carries, and sums that do not start with a minus sign (``exp(ref - logp)``).  Imported only
when an explanation is built (it imports sympy).
"""
from __future__ import annotations

from typing import Callable

import sympy as sp
from sympy.printing.precedence import precedence
from sympy.printing.str import StrPrinter

_FLIP = {">": "<", "<": ">", ">=": "<=", "<=": ">="}


class Printer(StrPrinter):
    def _print_StopGrad(self, e):
        return f"sg({self._print(e.args[0])})"

    def _print_Clamp(self, e):
        x, lo, hi = e.args
        return f"clamp({self._print(x)}, {self._print(lo)}, {self._print(hi)})"

    def _print_Piecewise(self, e):
        args = e.args
        if len(args) == 2 and args[0].expr == 1 and args[1].expr == 0 and args[1].cond == sp.true:
            return f"1[{self._print(args[0].cond)}]"
        parts = [f"{self._print(x)} if {self._print(c)}" for x, c in args if c != sp.true]
        rest = [self._print(x) for x, c in args if c == sp.true]
        return "(" + "; ".join(parts) + (f"; else {rest[0]}" if rest else "") + ")"

    def _print_And(self, e):
        """Bounds on one expression as a chain: ``-20 < logp - ref < 20``."""
        bounds = {}
        for rel in e.args:
            if not isinstance(rel, sp.core.relational.Relational):
                return super()._print_And(e)
            x, op, num = rel.lhs, rel.rel_op, rel.rhs
            if x.is_number and not num.is_number:
                x, num, op = num, x, _FLIP.get(op, op)
            side = "lo" if op in (">", ">=") else "hi" if op in ("<", "<=") else None
            if side is None or not num.is_number:
                return super()._print_And(e)
            bounds.setdefault(x, {})[side] = (num, "<" if op in (">", "<") else "<=")
        chains = []
        for x, b in bounds.items():
            s = self._print(x)
            if "lo" in b:
                s = f"{self._print(b['lo'][0])} {b['lo'][1]} {s}"
            if "hi" in b:
                s = f"{s} {b['hi'][1]} {self._print(b['hi'][0])}"
            chains.append(s)
        return " and ".join(chains)

    def _print_Add(self, expr, order=None):
        terms = list(self._as_ordered_terms(expr, order=order))
        if any(isinstance(t, sp.Order) for t in terms):
            return super()._print_Add(expr, order=order)  # a series keeps its order
        if terms and terms[0].could_extract_minus_sign():
            for i, t in enumerate(terms):
                if not t.could_extract_minus_sign():
                    terms.insert(0, terms.pop(i))
                    break
        prec = precedence(expr)
        parts = []
        for term in terms:
            t = self._print(term)
            if t.startswith("-") and not term.is_Add:
                sign, t = "-", t[1:]
            else:
                sign = "+"
            parts.extend([sign, f"({t})" if precedence(term) < prec or term.is_Add else t])
        sign = parts.pop(0)
        return ("" if sign == "+" else sign) + " ".join(parts)


def printer() -> Callable[[sp.Basic], str]:
    return Printer().doprint
