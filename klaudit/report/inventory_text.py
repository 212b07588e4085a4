"""The project's KL report card: one row per KL term, readable in a terminal.

A title with the totals, then a table (location, function, estimator, placement, the coefficient
``c(delta)`` the term puts on ``grad log pi``, confidence, verdict with the codes fired), with the
option variants and the defaults that choose between them indented under their term, then a legend.
Notebook terms are located as ``path:cell N:line``.
"""
from __future__ import annotations

from typing import TextIO

from ..model import Report, coefficient_text, is_principled
from ..notebook import locate
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
        rows.append((_where(report, t.loc.path, t.loc.line), t.function.rsplit(".", 1)[-1], est + anchor, pl,
                     coefficient_text(d, pl) if pl in ("as_loss", "in_reward") else "-", t.confidence, verdict))
        for v in t.variants:
            opts = "; ".join(f"{o}={vals}" for o, vals in v.options) or "-"
            mark = {True: "default", None: "?", False: ""}[v.is_default]
            rows.append((f"  option {opts}", _where(report, v.loc.path, v.loc.line, short=v.loc.path == t.loc.path), _est_name(v.derivation.estimator), v.placement,
                         coefficient_text(v.derivation, v.placement), mark,
                         "principled" if is_principled(v.derivation, v.placement) else
                         ("-" if v.placement not in ("as_loss", "in_reward") else "NOT principled")))
        for s in t.defaults:
            rows.append((f"  default {s.key}={s.value}", f"{s.path}:{s.line}", s.source, "", "", "", ""))
    header = ("location", "function", "estimator", "placement", "coefficient c(delta)", "confidence", "verdict")
    if not rows:
        out.write("No KL terms found.\n")
    else:
        n = len(report.terms)
        files = len({t.loc.path for t in report.terms})
        title = f"KL report card: {n} KL term{'s' if n != 1 else ''} in {files} file{'s' if files != 1 else ''}"
        out.write(title + "\n" + "=" * len(title) + "\n\n")
        widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
        widths = [min(w, 48) for w in widths]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        out.write(fmt.format(*header).rstrip() + "\n")
        out.write(fmt.format(*("-" * w for w in widths)).rstrip() + "\n")
        for r in rows:
            out.write(fmt.format(*(str(x)[:48] for x in r)).rstrip() + "\n")
        bad = sum(1 for t in report.terms if t.codes)
        good = sum(1 for t in report.terms if is_principled(t.derivation, t.placement.kind, t.placement.sign))
        off = sum(1 for t in report.terms if t.placement.kind not in ("as_loss", "in_reward"))
        out.write(f"\n{n} KL term{'s' if n != 1 else ''}, {bad} with findings: {good} principled, "
                  f"{n - good - off} not principled, {off} not on a gradient path (metric, mask, unknown).\n")
        out.write("c(delta): the coefficient the term puts on grad log pi, delta = pi_ref/pi; the principled "
                  "(reverse-KL) one is -log(delta).\nA code in the verdict names the rule that fired: "
                  "`klaudit rule CODE` explains it.\n")
    for e in report.errors:
        out.write(f"{e.path}: error: {e.message}\n")


def _est_name(e: str) -> str:
    return e if e in ("k1", "k2", "k3", "abs", "full", "unknown") else ("k3" if e == "k3_inverted" else "unknown")


def _where(report: Report, path: str, line: int, short: bool = False) -> str:
    cell, ln = locate(report.notebooks, path, line)
    if short:
        return f"cell {cell}, line {ln}" if cell is not None else f"line {ln}"
    return f"{path}:cell {cell}:{ln}" if cell is not None else f"{path}:{ln}"
