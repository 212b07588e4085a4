"""JSON output for ``check`` and ``inventory`` (documented in the README; keep stable)."""
from __future__ import annotations

import json
from typing import TextIO

from .. import __version__
from ..model import KLTerm, Report, coefficient_text, is_principled

SCHEMA_VERSION = 1


def findings(report: Report, out: TextIO) -> None:
    doc = {
        "version": SCHEMA_VERSION,
        "klaudit": __version__,
        "findings": [f.to_dict() for f in report.findings],
        "errors": [e.to_dict() for e in report.errors],
    }
    json.dump(doc, out, indent=2, sort_keys=False)
    out.write("\n")


def term_dict(t: KLTerm) -> dict:
    d = t.derivation
    out = {
        "path": t.loc.path,
        "line": t.loc.line,
        "column": t.loc.col,
        "function": t.function,
        "estimator": _estimator(t),
        "placement": t.placement.kind,
        "direction": d.direction if d.direction in ("reverse", "forward") else "unknown",
        "detached": bool(t.detached),
        "coefficient": coefficient_text(d, t.placement.kind),
        "principled": is_principled(d, t.placement.kind, t.placement.sign),
        "codes": list(t.codes),
        "use_line": t.placement.loc.line if t.placement.loc is not None else None,
        "anchor": d.anchor or None,
        "sign": t.placement.sign,
        "placement_detail": t.placement.detail,
        "confidence": t.confidence,
        "reachable": t.reachable,
        "expression": d.expression,
        "importance_weight": d.is_weight,
        "aggregation": t.aggregation,
        "roles": [{"role": r, "name": n, "why": w} for r, n, w in t.roles],
        "definition": ({"path": t.definition.path, "line": t.definition.line} if t.definition else None),
        "via": list(t.via),
        "variants": [
            {
                "options": [{"option": o, "values": v} for o, v in var.options],
                "path": var.loc.path, "line": var.loc.line,
                "estimator": _est_name(var.derivation.estimator),
                "placement": var.placement,
                "coefficient": coefficient_text(var.derivation, var.placement),
                "principled": is_principled(var.derivation, var.placement),
                "default": var.is_default,
                "reachable": var.reachable,
            }
            for var in t.variants
        ],
        "defaults": [
            {"key": s.key, "value": s.value, "path": s.path, "line": s.line, "source": s.source} for s in t.defaults
        ],
        "notes": list(t.notes),
    }
    return out


def _est_name(e: str) -> str:
    return e if e in ("k1", "k2", "k3", "abs", "full", "unknown") else ("k3" if e == "k3_inverted" else "unknown")


def _estimator(t: KLTerm) -> str:
    return _est_name(t.derivation.estimator)


def inventory(report: Report, out: TextIO) -> None:
    doc = {
        "version": SCHEMA_VERSION,
        "klaudit": __version__,
        "terms": [_in_cells(term_dict(t), report) for t in report.terms],
        "errors": [e.to_dict() for e in report.errors],
    }
    json.dump(doc, out, indent=2)
    out.write("\n")


def _in_cells(d: dict, report: Report) -> dict:
    """Notebook terms: ``line`` and ``use_line`` counted inside their cell, with ``cell``/``use_cell``."""
    from ..notebook import locate

    cm = report.notebooks.get(d["path"])
    if cm is None:
        return d
    d["cell"], d["line"] = locate(report.notebooks, d["path"], d["line"])
    if d.get("use_line"):
        d["use_cell"], d["use_line"] = locate(report.notebooks, d["path"], d["use_line"])
    for v in d.get("variants", ()):
        if v.get("path") == d["path"]:
            v["cell"], v["line"] = locate(report.notebooks, d["path"], v["line"])
    return d
