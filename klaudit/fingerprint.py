"""Fingerprints of findings that survive code moving up and down.

A finding's fingerprint hashes its file (relative to a base directory, ``/``-separated), its rule
code, the flagged source text with all whitespace collapsed, and its occurrence index among the
findings of that file with the same code and text.  Line numbers are not part of it, so inserting or
deleting lines above a finding, or re-indenting it, keeps its fingerprint; editing the flagged
expression, renaming the file or adding an identical finding above it gives a new one.

The source is re-read here (only for files with findings, only for the formats that need it:
SARIF and baselines), so the lint path carries no source text around.
"""
from __future__ import annotations

import hashlib
import os
from typing import Callable, Dict, List, Optional, Sequence

from .model import Finding

VERSION = "v1"
MAX_LINES = 20  # of the flagged range, hashed


def normalise(text: str) -> str:
    return " ".join(text.split())


def relative_path(path: str, base_dir: Optional[str] = None) -> str:
    """``path`` relative to ``base_dir`` (default: the current directory), with ``/`` separators;
    the absolute path when it is not below it (or on another drive)."""
    base = os.path.abspath(base_dir or os.getcwd())
    full = os.path.abspath(path)
    try:
        rel = os.path.relpath(full, base)
    except ValueError:
        return full.replace(os.sep, "/")
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return full.replace(os.sep, "/")
    return rel.replace(os.sep, "/")


class SourceLines:
    """The lines of each file, read once; in notebooks, the lines of each cell."""

    def __init__(self) -> None:
        self._cache: Dict[str, Callable[[Optional[int], int], str]] = {}

    def line(self, path: str, cell: Optional[int], line: int) -> str:
        get = self._cache.get(path)
        if get is None:
            get = self._cache[path] = self._load(path)
        return get(cell, line)

    def _load(self, path: str) -> Callable[[Optional[int], int], str]:
        from . import notebook
        from .source import SourceError, decode, read_bytes

        try:
            data = read_bytes(path, 0)
            if notebook.is_notebook(path):
                nb = notebook.load(path, data)
                lines = nb.text.split("\n")
                cm = nb.cells

                def get(cell, line):
                    v = cm.virtual(cell, line) if cell is not None else line
                    return lines[v - 1] if v and 0 < v <= len(lines) else ""
                return get
            lines = decode(path, data).text.split("\n")
        except (SourceError, OSError, ValueError):
            return lambda cell, line: ""
        return lambda cell, line: lines[line - 1] if 0 < line <= len(lines) else ""

    def text(self, f: Finding) -> str:
        end = max(f.end_line or f.line, f.line)
        end = min(end, f.line + MAX_LINES - 1)
        return normalise(" ".join(self.line(f.path, f.cell, ln) for ln in range(f.line, end + 1)))


def fingerprints(findings: Sequence[Finding], base_dir: Optional[str] = None,
                 lines: Optional[SourceLines] = None) -> List[str]:
    """One fingerprint per finding (same order)."""
    lines = lines or SourceLines()
    seen: Dict[tuple, int] = {}
    out = []
    for f in findings:
        rel = relative_path(f.path, base_dir)
        text = lines.text(f)
        key = (rel, f.code, text)
        n = seen.get(key, 0)
        seen[key] = n + 1
        h = hashlib.sha256("\0".join((VERSION, rel, f.code, text, str(n))).encode("utf-8")).hexdigest()
        out.append(h[:32])
    return out
