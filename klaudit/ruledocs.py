"""Rule documentation: one Markdown file per code in ``rules/`` (shipped in the wheel as
``klaudit/rule_docs``), served by ``klaudit rule`` and rendered into SARIF help."""
from __future__ import annotations

import os
from typing import Dict, Optional

_HERE = os.path.dirname(os.path.abspath(__file__))


def docs_dir() -> Optional[str]:
    for d in (os.path.join(_HERE, "rule_docs"), os.path.join(os.path.dirname(_HERE), "rules")):
        if os.path.isdir(d):
            return d
    return None


def all_docs() -> Dict[str, str]:
    """code -> file path."""
    d = docs_dir()
    out: Dict[str, str] = {}
    if d is None:
        return out
    for f in sorted(os.listdir(d)):
        if f.endswith(".md") and f[:2] == "KL" and f[2:5].isdigit():
            out[f[:5]] = os.path.join(d, f)
    return out


def read(code: str) -> Optional[str]:
    p = all_docs().get(code)
    if p is None:
        return None
    with open(p, encoding="utf-8") as fh:
        return fh.read()


def section(text: str, title: str) -> str:
    """The body of a ``## title`` section."""
    lines = text.splitlines()
    out, on = [], False
    for ln in lines:
        if ln.startswith("## "):
            if on:
                break
            on = ln[3:].strip().lower().startswith(title.lower())
            continue
        if on:
            out.append(ln)
    return "\n".join(out).strip()
