"""Suppression comments: ``# klaudit: ignore[KL102]`` / ``# klaudit: ignore`` / ``# noqa: KL102``.

A comment trailing a line covers findings on that line; a comment alone on the line directly above a
statement covers the whole statement.  Codes and kebab-case names are both accepted.
"""
from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass, field
from typing import Dict, Optional, Set, Tuple

from .rules.registry import lookup

_KLAUDIT = re.compile(r"klaudit\s*:\s*ignore(?:\[([^\]]*)\])?", re.I)
_NOQA = re.compile(r"\bnoqa\b(?:\s*:\s*([A-Za-z0-9_,\- ]+))?", re.I)


@dataclass
class Suppression:
    line: int
    codes: Optional[Set[str]]  # None: every code
    own_line: bool
    text: str
    used: Set[str] = field(default_factory=set)


def _codes(raw: Optional[str]) -> Optional[Set[str]]:
    if raw is None:
        return None
    out = set()
    for tok in re.split(r"[,\s]+", raw):
        if not tok:
            continue
        r = lookup(tok)
        out.add(r.code if r else tok.upper())
    return out or None


def scan(text: str) -> Dict[int, Suppression]:
    """Line -> suppression, from real comments only (never from strings)."""
    if "klaudit" not in text and "noqa" not in text.lower():
        return {}
    out: Dict[int, Suppression] = {}
    lines = text.split("\n")
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        toks = []
        for i, ln in enumerate(lines, 1):
            j = ln.find("#")
            if j >= 0:
                toks.append(tokenize.TokenInfo(tokenize.COMMENT, ln[j:], (i, j), (i, len(ln)), ln))
    for tok in toks:
        if tok.type != tokenize.COMMENT:
            continue
        line = tok.start[0]
        body = tok.string
        m = _KLAUDIT.search(body)
        codes = None
        hit = False
        if m:
            hit = True
            codes = _codes(m.group(1)) if m.group(1) is not None else None
        else:
            m2 = _NOQA.search(body)
            if m2:
                hit = True
                if m2.group(1):
                    c = _codes(m2.group(1))
                    # `noqa: E501` for another linter must not silence klaudit
                    codes = {x for x in c if x.startswith("KL")} if c else None
                    if c and not codes:
                        continue
        if not hit:
            continue
        own = lines[line - 1][: tok.start[1]].strip() == "" if 0 < line <= len(lines) else False
        out[line] = Suppression(line, codes, own, body.strip())
    return out


def is_suppressed(sups: Dict[int, Suppression], code: str, line: int, stmt: Tuple[int, int]) -> bool:
    s = sups.get(line)
    if s is not None and not s.own_line and (s.codes is None or code in s.codes):
        s.used.add(code)
        return True
    start = stmt[0] if stmt and stmt[0] else line
    above = sups.get(start - 1)
    if above is not None and above.own_line and (above.codes is None or code in above.codes):
        end = stmt[1] if stmt and stmt[1] else start
        if start <= line <= max(end, start):
            above.used.add(code)
            return True
    return False
