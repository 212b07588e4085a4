"""Which KL terms a ``PATH:LINE`` names, for ``klaudit explain`` and ``check --explain``.

A line names the terms whose estimator is written there (or whose statement spans it); failing that, the
terms whose value is used there; failing that, the terms with an option variant or a definition there.
"""
from __future__ import annotations

import os
import re
from typing import List, Optional, Sequence, Tuple

from . import model as M




def parse_target(text: str) -> Tuple[str, Optional[int], int]:
    """``PATH:LINE`` or, in a notebook, ``PATH:cell N:LINE`` -> (path, cell or None, line).
    Raises ValueError on anything else."""
    m = re.match(r"^(.+):cell (\d+):(\d+)$", text)
    if m:
        return m.group(1), int(m.group(2)), int(m.group(3))
    path, sep, line = text.rpartition(":")
    if not sep or not path or not line.strip().isdigit():
        raise ValueError(f"expected PATH:LINE, got {text!r}")
    return path, None, int(line)


def same_path(a: str, b: str) -> bool:
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def terms_at(terms: Sequence[M.KLTerm], path: str, line: int) -> List[M.KLTerm]:
    """The terms at ``path:line``: those whose estimator is written on that line (or whose statement
    spans it); else those whose value is used there; else those with an option variant or a definition
    there.  A helper's own term is left out when a term that lists it as a variant is also chosen."""
    mine = [t for t in terms if same_path(t.loc.path, path)]
    tiers = [
        [t for t in mine if t.loc.line == line],
        [t for t in mine if t.loc.line <= line <= max(t.loc.end_line, t.stmt[1] if t.stmt else 0)],
        [t for t in mine if t.placement.loc is not None and t.placement.loc.line <= line <= t.placement.loc.end_line],
        [t for t in mine if any(v.loc.line == line and same_path(v.loc.path, path) for v in t.variants)
         or (t.definition is not None and t.definition.line == line)],
    ]
    for tier in tiers:
        if tier:
            covered = {(v.loc.path, v.loc.line, v.loc.col) for t in tier for v in t.variants
                       if (v.loc.path, v.loc.line, v.loc.col) != (t.loc.path, t.loc.line, t.loc.col)}
            kept = [t for t in tier if (t.loc.path, t.loc.line, t.loc.col) not in covered]
            return kept or tier
    return []


def nearest_lines(terms: Sequence[M.KLTerm], path: str, line: int, n: int = 5) -> List[int]:
    """Lines of the terms in ``path``, nearest to ``line`` first."""
    lines = sorted({t.loc.line for t in terms if same_path(t.loc.path, path)})
    return sorted(lines, key=lambda x: (abs(x - line), x))[:n]


class TargetError(Exception):
    """A ``PATH:LINE`` that names no KL term (the message says which lines do)."""


def find(report: M.Report, target: str) -> List[M.KLTerm]:
    """The terms a ``PATH:LINE`` (or ``PATH:cell N:LINE``) target names in ``report``; raises
    TargetError with a one-line message listing the nearest term lines of that file."""
    from .notebook import locate

    path, cell, line = parse_target(target)
    cells = next((cm for p, cm in report.notebooks.items() if same_path(p, path)), None)
    if cell is not None:
        if cells is None or cells.virtual(cell, line) is None:
            raise TargetError(f"no KL term at {target}: {path} has no cell {cell} line {line}")
        line = cells.virtual(cell, line)
    found = terms_at(report.terms, path, line)
    if found:
        return found
    errors = [e.message for e in report.errors if same_path(e.path, path)]
    if errors:
        raise TargetError(f"no KL term at {target}: {path} could not be analysed ({errors[0]})")
    near = nearest_lines(report.terms, path, line)
    if not near:
        raise TargetError(f"no KL term at {target}: klaudit found no KL term in {path}")
    where = []
    for n in near:
        c, ln = locate(report.notebooks, next(t.loc.path for t in report.terms if same_path(t.loc.path, path)), n)
        where.append(f"cell {c}:{ln}" if c is not None else str(ln))
    return_word = "line" if len(where) == 1 else "lines"
    raise TargetError(f"no KL term at {target}; the nearest KL terms in {path} are at {return_word} "
                      f"{', '.join(where)}")


def terms_with_findings(report: M.Report) -> List[M.KLTerm]:
    """The terms that the reported findings concern, in report order."""
    keys = set()
    for f in report.findings:
        line = f.term_line or f.line
        if f.cell is not None and f.path in report.notebooks:
            line = report.notebooks[f.path].virtual(f.cell, line) or line
        keys.add((f.path, line))
    return [t for t in report.terms if (t.loc.path, t.loc.line) in keys]
