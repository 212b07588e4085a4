"""Plain-text rendering of ``klaudit explain``: one block per KL term, a labelled line per fact.

The block reads top to bottom as a derivation: the expression, its derivative, the coefficient c(delta)
it puts on grad log pi next to the principled -log(delta), how far they agree near delta = 1 and how
they behave far from it, what the term minimises, clamps, options, and the rules that fired.
"""
from __future__ import annotations

import json
import math
import textwrap
from typing import Sequence, TextIO

from .. import __version__
from ..explain import Explanation

LABEL = 14
WIDTH = 118
PLACEMENT_WORDS = {"as_loss": "as a loss", "in_reward": "in the reward", "metric": "logged as a metric",
                   "mask": "used as a mask", "controller": "read by a KL controller", "unknown": "(use unknown)"}


def write(explanations: Sequence[Explanation], out: TextIO) -> None:
    for i, e in enumerate(explanations):
        if i:
            out.write("\n")
        out.write(render(e))


def write_json(explanations: Sequence[Explanation], out: TextIO) -> None:
    json.dump({"version": 1, "klaudit": __version__, "explanations": [e.to_dict() for e in explanations]},
              out, indent=2)
    out.write("\n")


def render(e: Explanation) -> str:
    lines = []
    est = e.estimator if e.estimator != "unknown" else "KL-like term"
    est += {"old": " vs the rollout policy", "teacher": " vs a teacher"}.get(e.anchor, "")
    head = f"{e.where}:{e.column}: {est} {PLACEMENT_WORDS.get(e.placement, e.placement)}"
    head += f"  (in {e.function.rsplit('.', 1)[-1]}"
    if e.use and e.use != e.where:
        head += f"; used at {e.use.rsplit(':', 1)[-1] if e.use.rsplit(':', 1)[0] == e.where.rsplit(':', 1)[0] else e.use}"
    head += ")"
    lines.append(head)

    def row(label: str, text: str, wrap: bool = True) -> None:
        if not text:
            return
        parts = []
        for para in text.split("\n"):
            parts.extend(textwrap.wrap(para, WIDTH - LABEL - 2, break_long_words=False, break_on_hyphens=False,
                                       subsequent_indent="  ") or [""] if wrap else [para])
        first, *rest = parts
        lines.append(f"  {label:<{LABEL}}{first}")
        lines.extend(f"  {'':<{LABEL}}{r}" for r in rest)

    row("expression", f"E = {e.expression}" if e.expression else "")
    if e.value_form or e.estimates:
        row("value", "; ".join(x for x in (e.value_form, f"estimates {e.estimates}" if e.estimates else "") if x))
    d = f"dE/d{e.wrt} = {e.derivative}" if e.derivative else ""
    if e.derivative_on_policy and e.derivative_on_policy != e.derivative:
        d += f"\non-policy (old = {e.wrt}): {e.derivative_on_policy}"
    row("derivative", d)
    if e.coefficient_of:
        how = (f"as a loss, c is dE/d{e.wrt} on-policy" if e.coefficient_of == "derivative"
               else "in the reward, c is the value E itself")
        row("coefficient", f"c(delta) = {e.coefficient}\n({how}: the gradient is beta * c * grad log pi, "
                           f"delta = pi_ref/pi)")
        if e.scale != 1 or e.baseline:
            row("", f"matched scale {e.scale:g}" + (f", constant baseline {e.baseline:g}" if e.baseline else ""))
        row("principled", f"c*(delta) = {e.principled_coefficient}    (the reverse-KL gradient)"
            + ("    -> this term is principled" if e.principled else ""))
        row("agreement", _agreement(e))
        if e.limits:
            width = max(len(x.coefficient) for x in e.limits)
            for x in e.limits:
                hint = "pi >> pi_ref" if x.delta == "0" else "pi << pi_ref"
                row(f"delta -> {'0' if x.delta == '0' else 'inf'}",
                    f"c -> {x.coefficient:<{width}}   -log(delta) -> {x.principled}   ({hint}"
                    + (", read numerically" if x.how == "numeric" else "") + ")")
    row("minimises", e.minimizes + ("    (expected gradient, on-policy)" if e.coefficient_of and e.minimizes else ""))
    if e.generator:
        row("", f"expected gradient = grad E_pi_ref[g(pi/pi_ref)] with g(u) = {e.generator}")
    row("off-policy", e.off_policy)
    if e.zero_gradient:
        row("zero gradient", "; ".join(_zero(z) for z in e.zero_gradient))
    if e.importance_weight and e.importance_weight != "none":
        row("weight", f"importance weight pi/pi_old: {e.importance_weight}")
    if e.options:
        row("options", _options(e), wrap=False)
    for r in e.rules:
        row("rules" if r is e.rules[0] else "", f"{r.code} {r.name}: {r.summary}".rstrip(": "))
    if not e.rules:
        row("rules", "none fired")
    for n in e.notes:
        row("note" if n is e.notes[0] else "", n)
    return "\n".join(lines) + "\n"


def _agreement(e: Explanation) -> str:
    if not e.agreement:
        return ""
    if e.taylor_exact:
        head = "exact: c(delta) equals -log(delta) (after matching the scale)"
    elif e.taylor_order is None:
        head = "none: c and -log(delta) differ already at zeroth order at delta = 1"
    else:
        names = {0: "zeroth", 1: "first", 2: "second", 3: "third"}
        head = f"to {names.get(e.taylor_order, str(e.taylor_order) + 'th')} order at delta = 1"
        if e.taylor_order == 0:
            head += ": no first-order restoring force toward pi_ref"
    if e.series and not e.taylor_exact:
        head += f"\nin ell = -log(delta) = log(pi/pi_ref):\n  c           = {e.series}\n  -log(delta) = ell"
    if e.first_difference:
        head += f"\nc - (-log(delta)) = {e.first_difference}"
    return head


def _num(x: float) -> str:
    if x == math.inf:
        return "inf"
    if x == -math.inf:
        return "-inf"
    return f"{x:.5g}"


def _zero(z) -> str:
    if z.ell_lo == -math.inf:
        ell = f"ell < {_num(z.ell_hi)}"
        delta = f"delta > {_num(z.delta_lo)}"
    elif z.ell_hi == math.inf:
        ell = f"ell > {_num(z.ell_lo)}"
        delta = f"delta < {_num(z.delta_hi)}"
    else:
        ell = f"{_num(z.ell_lo)} < ell < {_num(z.ell_hi)}"
        delta = f"{_num(z.delta_lo)} < delta < {_num(z.delta_hi)}"
    return f"{ell} ({delta})"


def _options(e: Explanation) -> str:
    rows = [("option", "line", "estimator", "placement", "c(delta)", "verdict", "minimises", "")]
    for o in e.options:
        opts = "; ".join(_option(k, v, e.path) for k, v in o.options) or "-"
        verdict = "principled" if o.principled else ("-" if o.placement not in ("as_loss", "in_reward")
                                                     else "NOT principled")
        mark = {True: "<- default", None: "(default unknown)", False: ""}[o.default]
        if not o.reachable:
            mark = (mark + " unreachable").strip()
        where = str(o.line) if o.path == e.path else f"{o.path}:{o.line}"
        rows.append((opts, where, o.estimator, o.placement, o.coefficient, verdict, o.minimizes, mark))
    cap = (90, 40, 20, 12, 40, 16, 60, 30)
    rows = [tuple(c if len(c) <= m else c[:m - 3] + "..." for c, m in zip(r, cap)) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    text = ["  ".join(f"{c:<{w}}" for c, w in zip(r, widths)).rstrip() for r in rows]
    for s in e.defaults:
        text.append(f"default: {s.key} = {s.value}, set at {s.path}:{s.line} ({s.source})")
    return "\n".join(text)


def _option(key: str, value: str, path: str) -> str:
    if key == "called at":
        where, _, line = value.rpartition(":")
        return f"called at line {line}" if where == path else f"called at {value}"
    return f"{key}={value}"
