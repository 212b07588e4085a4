"""The data model the pipeline passes along: terms, variants, findings, errors.

Small frozen dataclasses holding no CST nodes and no sympy objects, so they pickle, cache and cross
process pools.  ``KLTerm`` is what the analyzer knows of one KL expression: where it is computed,
what it estimates, where its value goes, under which option choices (``variants``), with which
confidence, and what the symbolic layer derived for it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from .derive.coefficient import Derivation
from .ir import Expr, Loc

if TYPE_CHECKING:  # pragma: no cover
    from .notebook import CellMap

# Placements
IN_REWARD = "in_reward"
AS_LOSS = "as_loss"
METRIC = "metric"
MASK_ONLY = "mask"
CONTROLLER = "controller"
UNKNOWN = "unknown"
PLACEMENTS = (IN_REWARD, AS_LOSS, METRIC, MASK_ONLY, CONTROLLER, UNKNOWN)
PRECEDENCE = {AS_LOSS: 6, IN_REWARD: 5, CONTROLLER: 3, MASK_ONLY: 2, METRIC: 1, UNKNOWN: 0}

SEVERITIES = ("critical", "high", "medium", "low", "info")


@dataclass(frozen=True)
class Variant:
    """One option's version of a term: the option values that select it and what it does."""

    options: Tuple[Tuple[str, str], ...]  # (option label, condition text)
    loc: Loc  # where this variant's estimator is written
    derivation: Derivation
    placement: str
    is_default: Optional[bool]  # True: the shipped default picks it; None: unknown
    reachable: bool = True
    codes: Tuple[str, ...] = ()
    note: str = ""
    chain: Tuple[Tuple[Loc, str], ...] = ()  # helper call sites and the definition, with their functions
    context: Optional[Loc] = None  # for a helper's term: the call site this version is judged at
    placement_loc: Optional[Loc] = None
    flipped: bool = False  # default only once a switch that is off by default is turned on
    core: Optional[Expr] = field(default=None, compare=False, repr=False)  # this version's lifted expression

    def verdict(self) -> str:
        return principled_text(self.derivation, self.placement)


@dataclass(frozen=True)
class DefaultSource:
    key: str  # the option as written (e.g. "self.config.kl_loss_type") or config key
    value: str
    path: str
    line: int
    source: str  # "param" | "dataclass" | "argparse" | "yaml" | "get" | "literal"


@dataclass(frozen=True)
class Placement:
    kind: str  # one of PLACEMENTS
    loc: Optional[Loc]  # where the value enters the reward / loss / metric
    sign: int = 1  # +1: penalises (reward -= kl, loss += kl); -1: the opposite
    detail: str = ""  # e.g. "folded into advantages", "summed into the reward-to-go", "returned from a loss function"
    target: str = ""  # the name or key it is assigned to


@dataclass(frozen=True)
class KLTerm:
    """One KL term: an estimator expression and where its value goes."""

    loc: Loc  # of the estimator expression (or of the call that produced it here)
    function: str  # qualified name of the function holding it
    stmt: Tuple[int, int]  # lines of the statement holding ``loc`` (for suppressions)
    derivation: Derivation  # of the default (or only) variant
    placement: Placement
    core: Expr = field(compare=False, repr=False)
    definition: Optional[Loc] = None  # where the estimator itself is written when it came through calls
    via: Tuple[str, ...] = ()  # the call chain, outermost first ("helper@file:line")
    variants: Tuple[Variant, ...] = ()
    defaults: Tuple[DefaultSource, ...] = ()
    confidence: str = "high"  # high | medium | low
    roles: Tuple[Tuple[str, str, str], ...] = ()  # (role, name, how decided)
    detached: bool = False
    aggregation: str = "none"
    reachable: bool = True
    notes: Tuple[str, ...] = ()
    codes: Tuple[str, ...] = ()  # rule codes fired on this term (filled by the rules stage)
    kl_name: bool = False  # the value is named like a KL (kl, kld, per_token_kl, ...)
    context: Tuple[str, ...] = ()  # facts about the enclosing function: "ppo_ratio", "old_logp", ...
    chain: Tuple[Tuple[Loc, str], ...] = ()  # helpers the value came through: (location, function)
    callers: Tuple[Loc, ...] = ()  # for a helper's term: the call sites that decide its placement
    report_at_use: bool = False  # findings go where the value is used (a KL taken out of a returned tuple)
    masked: bool = False  # a token mask weights it (in the estimator or its aggregation)
    agg: str = "none"  # none | sum | mean | token-mean (sum divided by a token count)
    live_grad: Tuple[str, ...] = ()  # roles whose log-probs carry gradient here (from a forward pass, not detached)
    st_mismatch: bool = False  # straight-through form whose value and gradient read different tensors

    @property
    def estimator(self) -> str:
        return self.derivation.estimator

    @property
    def path(self) -> str:
        return self.loc.path

    @property
    def line(self) -> int:
        return self.loc.line

    def coefficient(self) -> str:
        return coefficient_text(self.derivation, self.placement.kind)

    def principled(self) -> bool:
        return is_principled(self.derivation, self.placement.kind, self.placement.sign)


def coefficient_text(d: Derivation, placement: str) -> str:
    if placement == IN_REWARD:
        return d.reward_coefficient or "unknown"
    if d.loss_coefficient:
        return d.loss_coefficient
    return "unknown"


def effective_sign(d: Derivation, placement: str, sign: int = 1) -> int:
    """+1 when the term penalises the divergence: the syntactic sign (reward minus, loss plus) times
    the sign of the derived coefficient (``ref - logp`` is a negated k1)."""
    scale = d.reward_scale if placement == IN_REWARD else d.loss_scale
    if scale == 0:
        return 0
    return sign if scale > 0 else -sign


def is_principled(d: Derivation, placement: str, sign: int = 1) -> bool:
    if placement == IN_REWARD:
        return d.anchor in ("ref", "teacher") and d.reward_family == "ell" and effective_sign(d, placement, sign) > 0
    if placement == AS_LOSS:
        if d.kind == "full":
            return d.loss_family == "ell" and sign > 0
        return d.loss_family == "ell" and effective_sign(d, placement, sign) > 0
    return False


def principled_text(d: Derivation, placement: str) -> str:
    if placement in (AS_LOSS, IN_REWARD):
        return "principled" if is_principled(d, placement) else "not principled"
    return "not a gradient path"


@dataclass(frozen=True)
class Fix:
    """A source edit (libcst codemod result) for one finding: the replacement of a line range."""

    path: str
    start_line: int
    end_line: int
    replacement: str  # new text for those lines (with newlines)
    description: str
    unsafe: bool = True


@dataclass(frozen=True)
class Finding:
    code: str
    name: str
    severity: str
    path: str
    line: int
    column: int
    end_line: int
    end_column: int
    message: str
    confidence: str = "high"
    fix: Optional[Fix] = None
    term_line: int = 0  # the estimator line of the term it concerns
    fingerprint: str = ""
    cell: Optional[int] = None  # notebooks: 1-based cell number; ``line`` is then the line in that cell

    def sort_key(self):
        return (self.path, self.cell or 0, self.line, self.column, self.code, self.message)

    def to_dict(self) -> dict:
        d = {
            "code": self.code, "name": self.name, "severity": self.severity, "path": self.path, "line": self.line,
            "column": self.column, "end_line": self.end_line, "end_column": self.end_column,
            "message": self.message, "confidence": self.confidence,
        }
        if self.cell is not None:
            d["cell"] = self.cell
        if self.fix is not None:
            d["fix"] = {"description": self.fix.description, "applicability": "unsafe" if self.fix.unsafe else "safe"}
        return d


@dataclass(frozen=True)
class FileError:
    path: str
    message: str

    def to_dict(self) -> dict:
        return {"path": self.path, "message": self.message}


@dataclass
class Report:
    """Everything a run produced, before formatting."""

    findings: List[Finding] = field(default_factory=list)
    terms: List[KLTerm] = field(default_factory=list)
    errors: List[FileError] = field(default_factory=list)
    files: int = 0
    unused_suppressions: List[Tuple[str, int, str]] = field(default_factory=list)
    notebooks: Dict[str, "CellMap"] = field(default_factory=dict)  # path -> virtual line map
    baselined: int = 0  # findings hidden because the baseline already records them
