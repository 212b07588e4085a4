"""What one fix does to one KL term, before it is written into the source.

Each fix kind (one module per kind) adds its part to a ``Rewrite`` of the term; ``render`` then
writes the composed expression in place of the estimator (and flips the operator at the placement
when the sign is wrong).  Composing in a fixed order lets the findings of one term (k3 as a loss in a
PPO update: KL102 and KL105) share one edit that fixes them all.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import libcst as cst

from ..model import KLTerm
from .operands import LogRatio, Operands
from .tree import ParsedFile


@dataclass
class Site:
    """The term's estimator in the source."""

    pf: ParsedFile
    term: KLTerm
    est: cst.BaseExpression  # the estimator expression (with a numeric factor next to it: k2's 1/2)
    scope: cst.CSTNode  # the enclosing function (or the module)
    operands: Operands
    ratio: Optional[LogRatio]  # the log-ratio it is built on, None when not found
    scale: float = 1.0  # the estimator is scale * (its textbook form): kept by a rewrite

    def scaled(self, coefficient: float, body: str) -> Optional[str]:
        """``c * body`` with c = coefficient * scale written as a number (None for a non-positive or
        unknown scale: the rewrite would change the sign or the strength of the penalty)."""
        c = coefficient * self.scale
        if not c > 0:
            return None
        if abs(c - 1.0) < 1e-12:
            return body
        return f"{format(c, '.12g')} * {body}"


@dataclass
class Rewrite:
    grad: Optional[str] = None  # new estimator text (None: the user's estimator is kept)
    value: Optional[str] = None  # straight-through: the value kept (the user's estimator)
    family: Optional[str] = None  # the coefficient family after the rewrite (None: unchanged)
    weight: Optional[str] = None  # importance weight multiplied in
    detach: bool = False  # append .detach() to the result
    swap: Optional[cst.BinaryOperation] = None  # log-ratio written ref - logp: swap its operands
    flip: Optional[cst.CSTNode] = None  # the BinaryOperation / AugAssign whose +/- is flipped
    notes: List[str] = field(default_factory=list)
