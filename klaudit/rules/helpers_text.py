"""Small text helpers shared by rule messages."""
from __future__ import annotations

from ..model import KLTerm
from .base import conditional_text, confidence_text, default_variant_text


def ctx(t: KLTerm) -> str:
    return default_variant_text(t) + conditional_text(t) + confidence_text(t)


def use(t: KLTerm, what: str = "loss") -> str:
    if t.placement.loc is not None and t.placement.loc.line != t.loc.line:
        return f" (added to the {what} at line {t.placement.loc.line})"
    return ""


def ranges(rs) -> str:
    parts = []
    for a, b in rs:
        if a <= -14.9:
            parts.append(f"ell < {b:.4g}")
        elif b >= 14.9:
            parts.append(f"ell > {a:.4g}")
        else:
            parts.append(f"{a:.4g} < ell < {b:.4g}")
    return " or ".join(parts)
