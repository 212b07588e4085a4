"""The project's KL report card: one row per KL term, readable in a terminal."""
from __future__ import annotations

from typing import TextIO

from ..model import Report, coefficient_text, is_principled
from .json_report import _estimator


def write(report: Report, out: TextIO) -> None:
    rows = []
    for t in report.terms:
        d = t.derivation
        pl = t.placement.kind
        verdict = ("principled" if is_principled(d, pl, t.placement.sign) else
                   ("-" if pl not in ("as_loss", "in_reward") else "NOT principled"))
        if t.codes:
            verdict += " " + ",".join(t.codes)
        if not t.reachable:
            verdict += " (unreachable)"
        est = _estimator(t)
        if d.estimator == "k3_inverted":
            est = "k3 (inverted ratio)"
        anchor = {"ref": "", "old": " vs old policy", "teacher": " vs teacher"}.get(d.anchor, "")
        rows.append((f"{t.loc.path}:{t.loc.line}", t.function.rsplit(".", 1)[-1], est + anchor, pl,
                     coefficient_text(d, pl), t.confidence, verdict))
        for v in t.variants:
            opts = "; ".join(f"{o}={vals}" for o, vals in v.options) or "-"
            mark = {True: "default", None: "?", False: ""}[v.is_default]
            rows.append((f"  option {opts}", f"line {v.loc.line}", _est_name(v.derivation.estimator), v.placement,
                         coefficient_text(v.derivation, v.placement), mark,
                         "principled" if is_principled(v.derivation, v.placement) else
                         ("-" if v.placement not in ("as_loss", "in_reward") else "NOT principled")))
        for s in t.defaults:
            rows.append((f"  default {s.key}={s.value}", f"{s.path}:{s.line}", s.source, "", "", "", ""))
    header = ("location", "function", "estimator", "placement", "coefficient c(delta)", "confidence", "verdict")
    if not rows:
        out.write("No KL terms found.\n")
    else:
        widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
        widths = [min(w, 48) for w in widths]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        out.write(fmt.format(*header).rstrip() + "\n")
        out.write(fmt.format(*("-" * w for w in widths)).rstrip() + "\n")
        for r in rows:
            out.write(fmt.format(*(str(x)[:48] for x in r)).rstrip() + "\n")
        n = len(report.terms)
        bad = sum(1 for t in report.terms if t.codes)
        out.write(f"\n{n} KL term{'s' if n != 1 else ''}, {bad} with findings.\n")
    for e in report.errors:
        out.write(f"{e.path}: error: {e.message}\n")


def _est_name(e: str) -> str:
    return e if e in ("k1", "k2", "k3", "abs", "full", "unknown") else ("k3" if e == "k3_inverted" else "unknown")
