"""Plain-text output, the ``full`` (default, alias ``text``) and ``concise`` formats.

Each finding is ``path:line:col: CODE message`` (columns 1-based; in notebooks
``path:cell N:line:col: CODE message`` with the line counted inside the cell); ``full`` adds the rule's
short help (and its fix, when there is one) under it and a closing count.  Files that could not be
analysed are listed as ``path: error: reason``.  Colour only when asked (the CLI asks on a terminal
without ``NO_COLOR``).
"""
from __future__ import annotations

from typing import TextIO

from ..model import Finding, Report

_RESET = "\x1b[0m"
_BOLD = "\x1b[1m"
_DIM = "\x1b[2m"
_CYAN = "\x1b[36m"
_SEVERITY_COLOR = {"critical": "\x1b[1;31m", "high": "\x1b[1;31m", "medium": "\x1b[1;33m", "low": "\x1b[1;36m",
                   "info": "\x1b[1;36m"}


def location(f: Finding) -> str:
    """``path:line:col`` or, in a notebook, ``path:cell N:line:col``."""
    if f.cell is not None:
        return f"{f.path}:cell {f.cell}:{f.line}:{f.column}"
    return f"{f.path}:{f.line}:{f.column}"


def finding_line(f: Finding, color: bool = False) -> str:
    if not color:
        return f"{location(f)}: {f.code} {f.message}"
    code = f"{_SEVERITY_COLOR.get(f.severity, _BOLD)}{f.code}{_RESET}"
    return f"{_BOLD}{location(f)}{_RESET}: {code} {f.message}"


def help_lines(f: Finding, color: bool = False):
    from ..rules.registry import BY_CODE

    rule = BY_CODE.get(f.code)
    summary = rule.summary if rule is not None else ""
    label = f"{_CYAN}help{_RESET}" if color else "help"
    out = [f"  {label}: [{f.name}] {summary} Run `klaudit rule {f.code}` for details."]
    if f.fix is not None:
        kind = "unsafe fix" if f.fix.unsafe else "fix"
        out.append(f"  {_CYAN + kind + _RESET if color else kind}: {f.fix.description}")
    return out


def findings(report: Report, out: TextIO, statistics: bool = False, color: bool = False,
             concise: bool = False) -> None:
    if statistics:
        errors(report, out)
        write_statistics(report, out)
        return
    for f in report.findings:
        out.write(finding_line(f, color) + "\n")
        if not concise:
            for ln in help_lines(f, color):
                out.write(ln + "\n")
    errors(report, out)
    if not concise:
        summary(report, out)


def summary(report: Report, out: TextIO) -> None:
    n = len(report.findings)
    files = len({f.path for f in report.findings})
    base = report.baselined
    if n:
        out.write(f"Found {n} finding{'s' if n != 1 else ''} in {files} file{'s' if files != 1 else ''}"
                  + (f" ({base} more recorded in the baseline)." if base else ".") + "\n")
    elif base:
        out.write(f"No new findings ({base} recorded in the baseline).\n")


def errors(report: Report, out: TextIO) -> None:
    for e in report.errors:
        out.write(f"{e.path}: error: {e.message}\n")


def statistics_rows(report: Report):
    """(count, code, name), most frequent first."""
    from ..rules.registry import BY_CODE

    counts = {}
    for f in report.findings:
        counts[f.code] = counts.get(f.code, 0) + 1
    return [(counts[c], c, BY_CODE[c].name if c in BY_CODE else "")
            for c in sorted(counts, key=lambda c: (-counts[c], c))]


def write_statistics(report: Report, out: TextIO) -> None:
    rows = statistics_rows(report)
    for count, code, name in rows:
        out.write(f"{count:>5}  {code}  {name}\n")
    if rows:
        total = sum(r[0] for r in rows)
        out.write(f"{total:>5}  finding{'s' if total != 1 else ''} in total\n")
