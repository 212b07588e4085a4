"""Baselines: adopt klaudit on legacy code by recording today's findings and reporting only new ones.

``klaudit check --write-baseline FILE`` records every current finding; ``klaudit check --baseline FILE``
hides the findings the file records.  Findings are matched by fingerprint (see ``fingerprint.py``),
which ignores line numbers: code moving up or down stays baselined, a new or edited KL term does not.
Paths are stored relative to the baseline file's directory, so the file can be committed and used
from any working directory.

The file is versioned JSON::

    {"klaudit_baseline": 1, "klaudit": "0.1.0",
     "findings": [{"fingerprint": "...", "code": "KL102", "path": "src/train.py", "line": 26,
                   "source": "per_token_kl = torch.exp(ref_logps - logps) - ..."}]}

``line`` (and ``cell`` in notebooks) and ``source`` are there for the reader; only ``fingerprint``
is matched.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from typing import Counter as CounterT

from . import __version__
from .fingerprint import SourceLines, fingerprints, relative_path
from .model import Report

FORMAT = 1


class BaselineError(Exception):
    """A baseline file that cannot be read or written; ``str()`` is one line with the path."""


def _base_dir(path: str) -> str:
    return os.path.dirname(os.path.abspath(path))


def write(report: Report, path: str) -> int:
    """Record every finding of ``report`` in ``path``; returns how many."""
    lines = SourceLines()
    base = _base_dir(path)
    fps = fingerprints(report.findings, base, lines)
    entries = []
    for f, fp in zip(report.findings, fps):
        e = {"fingerprint": fp, "code": f.code, "path": relative_path(f.path, base), "line": f.line}
        if f.cell is not None:
            e["cell"] = f.cell
        e["source"] = lines.text(f)[:200]
        entries.append(e)
    doc = {"klaudit_baseline": FORMAT, "klaudit": __version__, "findings": entries}
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise BaselineError(f"{path}: error: cannot write baseline: {e.strerror or e}") from None
    return len(entries)


def load(path: str) -> CounterT[str]:
    """The fingerprints a baseline file records."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise BaselineError(f"{path}: error: baseline file not found (create it with --write-baseline)") from None
    except IsADirectoryError:
        raise BaselineError(f"{path}: error: baseline is a directory, not a file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BaselineError(f"{path}: error: cannot read baseline: {getattr(e, 'strerror', None) or e}") from None
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as e:
        where = f" at line {e.lineno}, column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
        raise BaselineError(f"{path}: error: baseline is not valid JSON{where}") from None
    if not isinstance(doc, dict) or "klaudit_baseline" not in doc:
        raise BaselineError(f"{path}: error: not a klaudit baseline (no \"klaudit_baseline\" version key)")
    version = doc["klaudit_baseline"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise BaselineError(f"{path}: error: baseline format version must be an integer, got {version!r}")
    if version > FORMAT:
        raise BaselineError(f"{path}: error: baseline format {version} was written by a newer klaudit "
                            f"(this one reads format {FORMAT}); upgrade klaudit")
    if version < 1:
        raise BaselineError(f"{path}: error: unknown baseline format {version}")
    entries = doc.get("findings")
    if not isinstance(entries, list):
        raise BaselineError(f"{path}: error: baseline has no \"findings\" list")
    out: CounterT[str] = Counter()
    for i, e in enumerate(entries):
        fp = e.get("fingerprint") if isinstance(e, dict) else None
        if not isinstance(fp, str) or not fp:
            raise BaselineError(f"{path}: error: baseline entry {i + 1} has no \"fingerprint\" string")
        out[fp] += 1
    return out


def apply(report: Report, path: str) -> None:
    """Drop from ``report`` the findings the baseline at ``path`` records (counted in
    ``report.baselined``)."""
    known = load(path)
    fps = fingerprints(report.findings, _base_dir(path))
    kept = []
    for f, fp in zip(report.findings, fps):
        if known[fp] > 0:
            known[fp] -= 1
            report.baselined += 1
        else:
            kept.append(f)
    report.findings = kept
