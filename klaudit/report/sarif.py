"""SARIF 2.1.0 output, in the shape GitHub code scanning accepts.

``tool.driver.rules`` lists every registered rule (id, kebab-case name, short and full description,
help text and Markdown from the rule's doc in ``rules/``, default level from its severity); each result
has ``ruleId``, ``level``, a message, a location with a URI relative to ``%SRCROOT%`` (the current
directory), a 1-based region (columns counted in Unicode code points) and ``partialFingerprints``
that survive code moving up and down (see ``fingerprint.py``).  Files that could not be analysed
are tool execution notifications.

In notebooks the region is the line of the ``.ipynb`` file that stores the flagged source line (that
is the line a reviewer sees in the diff), the message starts with ``cell N, line L:``, and the result's
properties carry ``cell`` and ``cellLine``.
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Dict, Optional, TextIO
from urllib.parse import quote

from .. import __version__
from ..fingerprint import fingerprints, relative_path
from ..model import Finding, Report

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
SRCROOT = "%SRCROOT%"
FINGERPRINT_KEY = "klaudit/v1"
LEVELS = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
PROBLEM_SEVERITY = {"error": "error", "warning": "warning", "note": "recommendation"}


def level(severity: str) -> str:
    return LEVELS.get(severity, "warning")


def _strip_title(doc: str) -> str:
    lines = doc.strip().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join(lines).strip()


def rule_descriptor(rule) -> dict:
    from .. import ruledocs

    doc = ruledocs.read(rule.code) or ""
    full = ruledocs.section(doc, "What it flags") if doc else ""
    body = _strip_title(doc) if doc else rule.summary
    lvl = level(rule.severity)
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": full or rule.summary, "markdown": full or rule.summary},
        "help": {"text": body, "markdown": f"**{rule.code} {rule.name}**\n\n{body}"},
        "defaultConfiguration": {"level": lvl, "enabled": not rule.preview},
        "properties": {
            "tags": ["correctness", "kl-regularization", "reinforcement-learning"],
            "problem.severity": PROBLEM_SEVERITY[lvl],
            "klaudit.severity": rule.severity,
        },
    }


def artifact_location(path: str, root: Optional[str] = None) -> dict:
    rel = relative_path(path, root)
    if rel.startswith("/"):
        return {"uri": pathlib.Path(rel).as_uri()}
    return {"uri": quote(rel, safe="/"), "uriBaseId": SRCROOT}


def _region(f: Finding, report: Report) -> dict:
    if f.cell is not None:
        cm = report.notebooks.get(f.path)
        line = (cm.json_line(f.cell, f.line) if cm is not None else 0) or f.line
        return {"startLine": line}
    region = {"startLine": max(f.line, 1), "startColumn": max(f.column, 1)}
    if f.end_line and f.end_line >= f.line:
        region["endLine"] = f.end_line
        if f.end_column and (f.end_line > f.line or f.end_column > f.column):
            region["endColumn"] = f.end_column
    return region


def result(f: Finding, index: Dict[str, int], fp: str, report: Report, root: Optional[str] = None) -> dict:
    text = f.message
    props = {"severity": f.severity, "confidence": f.confidence}
    if f.cell is not None:
        text = f"cell {f.cell}, line {f.line}: {text}"
        props.update(cell=f.cell, cellLine=f.line, cellColumn=f.column)
    out = {
        "ruleId": f.code,
        "level": level(f.severity),
        "message": {"text": text},
        "locations": [{"physicalLocation": {"artifactLocation": artifact_location(f.path, root),
                                            "region": _region(f, report)}}],
        "partialFingerprints": {FINGERPRINT_KEY: fp},
        "properties": props,
    }
    if f.code in index:
        out["ruleIndex"] = index[f.code]
    if f.fix is not None:
        props["fix"] = f.fix.description
        if f.cell is None:  # the fix replaces whole lines: from the start of the first to that of the next
            fx = f.fix
            region = {"startLine": fx.start_line, "startColumn": 1, "endLine": fx.end_line + 1, "endColumn": 1}
            out["fixes"] = [{"description": {"text": fx.description}, "artifactChanges": [{
                "artifactLocation": artifact_location(fx.path, root),
                "replacements": [{"deletedRegion": region, "insertedContent": {"text": fx.replacement}}]}]}]
    return out


def document(report: Report, root: Optional[str] = None) -> dict:
    from ..rules.registry import RULES

    root = os.path.abspath(root or os.getcwd())
    rules = [rule_descriptor(r) for r in RULES]
    index = {r["id"]: i for i, r in enumerate(rules)}
    fps = fingerprints(report.findings, root)
    notifications = [
        {"level": "error", "message": {"text": f"{e.path}: {e.message}"},
         "locations": [{"physicalLocation": {"artifactLocation": artifact_location(e.path, root)}}]}
        for e in report.errors
    ]
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "klaudit", "version": __version__, "semanticVersion": __version__,
                                "rules": rules}},
            "originalUriBaseIds": {SRCROOT: {"uri": pathlib.Path(root).as_uri().rstrip("/") + "/"}},
            "columnKind": "unicodeCodePoints",
            "invocations": [{"executionSuccessful": True, "toolExecutionNotifications": notifications}],
            "results": [result(f, index, fp, report, root) for f, fp in zip(report.findings, fps)],
        }],
    }


def write(report: Report, out: TextIO, root: Optional[str] = None) -> None:
    json.dump(document(report, root), out, indent=2)
    out.write("\n")
