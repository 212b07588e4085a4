"""What a rule is: a code, a kebab-case name, a severity, a default state, and a plain function
from a classified term (and the project's terms) to hits.  Rules never look at syntax trees, so
they can be tested on hand-built terms."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Sequence

from ..ir import Loc
from ..model import Fix, KLTerm


@dataclass(frozen=True)
class Hit:
    message: str
    loc: Optional[Loc] = None  # default: the term's location
    fix: Optional[Fix] = None


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: str
    summary: str
    check: Callable[[KLTerm, "Project"], Iterable[Hit]]
    preview: bool = False
    pathology: str = ""  # THEORY.md section 6 id (P01...)


class Project:
    """All terms of the run, for rules that relate terms to each other (double counting)."""

    def __init__(self, terms: Sequence[KLTerm]):
        self.terms = list(terms)

    def in_function(self, qualname: str) -> List[KLTerm]:
        return [t for t in self.terms if t.function == qualname]


REF_ANCHORS = ("ref",)


def penalises_reference(t: KLTerm) -> bool:
    """A regulariser toward the reference, on a gradient path, reachable."""
    return t.derivation.anchor in REF_ANCHORS and t.reachable


def default_variant_text(t: KLTerm) -> str:
    """' (the default: kl_loss_type='low_var_kl' at file:line)' when options chose this version."""
    if not t.variants or not t.defaults:
        return ""
    parts = [f"{d.key}={d.value} ({d.source} at {d.path}:{d.line})" for d in t.defaults]
    return " [selected by the shipped default " + ", ".join(parts) + "]"


def conditional_text(t: KLTerm) -> str:
    main = [v for v in t.variants if v.is_default is None and v.options]
    if not main:
        return ""
    opts = "; ".join(f"{o} = {vals}" for o, vals in main[0].options)
    return f" (when {opts})"


def confidence_text(t: KLTerm) -> str:
    if t.confidence == "low":
        return " (low confidence: the tensors' roles were inferred from weak names)"
    return ""
