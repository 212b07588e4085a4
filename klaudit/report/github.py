"""GitHub Actions workflow commands: one ``::error``/``::warning``/``::notice`` line per finding, which
GitHub turns into annotations on the pull request.

    ::warning file=src/train.py,line=26,endLine=26,col=20,endColumn=71,title=klaudit (KL102)::k3 ...

Property values escape ``%``, ``\\r``, ``\\n``, ``:`` and ``,``; the message escapes ``%``, ``\\r`` and
``\\n``.  A range over several lines has no columns (GitHub ignores or misplaces them there).  Paths
are relative to the current directory (the checkout, in a workflow).  In notebooks the line is the
one of the ``.ipynb`` file that stores the flagged source line and the message names the cell.
"""
from __future__ import annotations

from typing import Dict, Optional, TextIO

from ..fingerprint import relative_path
from ..model import Finding, Report

COMMANDS = {"critical": "error", "high": "error", "medium": "warning", "low": "notice", "info": "notice"}


def escape_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(s: str) -> str:
    return escape_data(s).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str, props: Dict[str, object]) -> str:
    ps = ",".join(f"{k}={escape_property(str(v))}" for k, v in props.items() if v is not None)
    return f"::{name} {ps}::{escape_data(message)}" if ps else f"::{name}::{escape_data(message)}"


def finding_command(f: Finding, report: Optional[Report] = None) -> str:
    props: Dict[str, object] = {"file": relative_path(f.path)}
    message = f.message
    if f.cell is not None:
        cm = report.notebooks.get(f.path) if report is not None else None
        props["line"] = (cm.json_line(f.cell, f.line) if cm is not None else 0) or f.line
        message = f"cell {f.cell}, line {f.line}: {message}"
    else:
        props["line"] = f.line
        end = f.end_line if f.end_line and f.end_line >= f.line else f.line
        props["endLine"] = end
        if end == f.line:
            props["col"] = f.column
            if f.end_column and f.end_column > f.column:
                props["endColumn"] = f.end_column
    props["title"] = f"klaudit ({f.code})"
    return command(COMMANDS.get(f.severity, "warning"), message, props)


def write(report: Report, out: TextIO) -> None:
    for f in report.findings:
        out.write(finding_command(f, report) + "\n")
    for e in report.errors:
        out.write(command("error", e.message, {"file": relative_path(e.path), "title": "klaudit"}) + "\n")
