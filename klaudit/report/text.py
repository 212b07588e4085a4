"""Plain-text output: ``path:line:col: CODE message`` (columns 1-based), errors as ``path: error: ...``."""
from __future__ import annotations

from typing import List, TextIO

from ..model import Report


def findings(report: Report, out: TextIO, statistics: bool = False, color: bool = False) -> None:
    for f in report.findings:
        code = f"\x1b[1;31m{f.code}\x1b[0m" if color else f.code
        out.write(f"{f.path}:{f.line}:{f.column}: {code} {f.message}\n")
    errors(report, out)
    if statistics:
        write_statistics(report, out)
    n = len(report.findings)
    if n and not statistics:
        out.write(f"Found {n} finding{'s' if n != 1 else ''} in {len({f.path for f in report.findings})} "
                  f"file{'s' if len({f.path for f in report.findings}) != 1 else ''}.\n")


def errors(report: Report, out: TextIO) -> None:
    for e in report.errors:
        out.write(f"{e.path}: error: {e.message}\n")


def write_statistics(report: Report, out: TextIO) -> None:
    from ..rules.registry import BY_CODE

    counts = {}
    for f in report.findings:
        counts[f.code] = counts.get(f.code, 0) + 1
    for code in sorted(counts, key=lambda c: (-counts[c], c)):
        name = BY_CODE[code].name if code in BY_CODE else ""
        out.write(f"{counts[code]:>5}  {code}  {name}\n")
