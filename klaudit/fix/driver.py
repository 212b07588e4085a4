"""Applying fixes to files, or showing them as a unified diff: what ``--fix`` and ``--diff`` do.

Each ``Fix`` replaces whole lines.  Per file the fixes are applied in line order; one that overlaps a
fix already taken is left for the next run (two terms on one statement), an identical one (two
findings of one term share their fix) is applied once.  The file keeps its encoding, byte-order mark
and each line's own newline; the rewritten text must parse, or the file is left alone.
"""
from __future__ import annotations

import difflib
import io
import re
import tokenize
from dataclasses import dataclass, field
from typing import Dict, List, Optional, TextIO, Tuple

from ..model import Finding, Fix, Report

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


@dataclass
class FilePlan:
    path: str
    old: List[str]  # lines with their own newlines
    new: List[str]
    encoding: str
    applied: List[Fix] = field(default_factory=list)
    skipped: List[Fix] = field(default_factory=list)  # overlapping an applied one
    error: Optional[str] = None

    @property
    def changed(self) -> bool:
        return self.error is None and self.old != self.new


@dataclass
class Plan:
    files: List[FilePlan]
    findings: int  # findings the applied fixes address

    @property
    def changed(self) -> List[FilePlan]:
        return [f for f in self.files if f.changed]

    @property
    def edits(self) -> int:
        return sum(len(f.applied) for f in self.changed)

    @property
    def skipped(self) -> int:
        return sum(len(f.skipped) for f in self.files)


def fixable(report: Report) -> List[Finding]:
    return [f for f in report.findings if f.fix is not None]


def plan(report: Report) -> Plan:
    by_path: Dict[str, List[Fix]] = {}
    for f in fixable(report):
        by_path.setdefault(f.fix.path, []).append(f.fix)
    files = [_plan_file(path, fixes) for path, fixes in sorted(by_path.items())]
    taken = {id(x) for fp in files if fp.changed for x in fp.applied}
    keys = {_key(x) for fp in files if fp.changed for x in fp.applied}
    n = sum(1 for f in fixable(report) if id(f.fix) in taken or _key(f.fix) in keys)
    return Plan(files, n)


def _key(fx: Fix) -> Tuple:
    return fx.path, fx.start_line, fx.end_line, fx.replacement


def _plan_file(path: str, fixes: List[Fix]) -> FilePlan:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        text = data.decode(encoding)
    except (OSError, SyntaxError, UnicodeDecodeError, LookupError) as e:
        return FilePlan(path, [], [], "utf-8", error=f"cannot read: {e}")
    lines = _LINE.findall(text)
    fp = FilePlan(path, lines, list(lines), encoding)
    seen = set()
    last = 0
    chosen: List[Fix] = []
    for fx in sorted(fixes, key=lambda x: (x.start_line, x.end_line, x.replacement)):
        k = _key(fx)
        if k in seen:
            continue
        seen.add(k)
        if fx.start_line <= last or fx.end_line > len(lines):
            fp.skipped.append(fx)
            continue
        chosen.append(fx)
        last = fx.end_line
    new = list(lines)
    for fx in reversed(chosen):
        new[fx.start_line - 1:fx.end_line] = _with_newlines(fx, lines)
    fp.new = new
    fp.applied = chosen
    from .tree import parse_text

    if parse_text(path, "".join(new).replace("\r\n", "\n").replace("\r", "\n")) is None:
        fp.error = "the fixed file would not parse; left unchanged"
        fp.new = list(lines)
    return fp


def _with_newlines(fx: Fix, lines: List[str]) -> List[str]:
    """The replacement lines, ending like the lines they replace."""
    first, last = lines[fx.start_line - 1], lines[fx.end_line - 1]
    nl = first[len(first.rstrip("\r\n")):] or "\n"
    end = last[len(last.rstrip("\r\n")):]
    rep = fx.replacement.split("\n")
    if rep and rep[-1] == "":
        rep.pop()
    out = [ln + nl for ln in rep]
    if out:
        out[-1] = rep[-1] + end
    return out


def diff(p: Plan, out: TextIO) -> None:
    for fp in p.changed:
        old = [ln.rstrip("\r\n") for ln in fp.old]
        new = [ln.rstrip("\r\n") for ln in fp.new]
        for ln in difflib.unified_diff(old, new, fp.path, fp.path, lineterm=""):
            out.write(ln + "\n")


def write(p: Plan) -> List[Tuple[str, str]]:
    """Write every changed file; returns the errors as (path, message)."""
    errors = []
    for fp in p.changed:
        try:
            data = "".join(fp.new).encode(fp.encoding)
            with open(fp.path, "wb") as fh:
                fh.write(data)
        except (OSError, UnicodeEncodeError, LookupError) as e:
            errors.append((fp.path, f"cannot write the fix: {e}"))
    return errors


def _s(n: int, word: str, plural: str = "") -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def summary_diff(p: Plan) -> str:
    if not p.changed:
        return "klaudit: no fixes available"
    msg = (f"klaudit: {_s(p.edits, 'unsafe fix', 'unsafe fixes')} for {_s(p.findings, 'finding')} would change "
           f"{_s(len(p.changed), 'file')}; apply them with `--fix --unsafe-fixes`")
    return msg + _skipped(p)


def summary_applied(p: Plan) -> str:
    if not p.changed:
        return "klaudit: no fixes applied (none available)"
    msg = (f"klaudit: applied {_s(p.edits, 'unsafe fix', 'unsafe fixes')} for {_s(p.findings, 'finding')} in "
           f"{_s(len(p.changed), 'file')}")
    return msg + _skipped(p)


def summary_available(report: Report) -> str:
    n = len(fixable(report))
    if not n:
        return "klaudit: no fixes available"
    return (f"klaudit: {_s(n, 'unsafe fix', 'unsafe fixes')} available, none applied: they change training "
            "dynamics; review them with `--diff`, apply them with `--fix --unsafe-fixes`")


def _skipped(p: Plan) -> str:
    errs = [f"\n{fp.path}: error: {fp.error}" for fp in p.files if fp.error]
    more = ""
    if p.skipped:
        more = f" ({_s(p.skipped, 'fix', 'fixes')} overlapping another one left for the next run)"
    return more + "".join(errs)
