"""Read the expectations written inline in fixtures.

``# expect: KL102`` (or ``KL102, KL401``) on a line: those findings, exactly, on that line.
``term: k3 as_loss`` on a line: a KL term whose estimator expression starts there.
Lines without annotations must produce no finding.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Set, Tuple

EXPECT = re.compile(r"expect:\s*((?:KL\d{3}[,\s]*)+)")
TERM = re.compile(r"term:\s*([a-z0-9_]+)\s+([a-z_]+)")


@dataclass
class Expectations:
    findings: Dict[int, Set[str]] = field(default_factory=dict)
    terms: Dict[int, Tuple[str, str]] = field(default_factory=dict)


def read(path: str) -> Expectations:
    exp = Expectations()
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if "#" not in line:
                continue
            comment = line[line.index("#"):]
            m = EXPECT.search(comment)
            if m:
                exp.findings[i] = {c for c in re.findall(r"KL\d{3}", m.group(1))}
            t = TERM.search(comment)
            if t:
                exp.terms[i] = (t.group(1), t.group(2))
    return exp


def actual_findings(report) -> Dict[Tuple[str, int], Set[str]]:
    out: Dict[Tuple[str, int], Set[str]] = {}
    for f in report.findings:
        out.setdefault((f.path, f.line), set()).add(f.code)
    return out
