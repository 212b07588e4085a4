"""The user's own expressions for the log-probs a KL term reads, found in the source.

A fix writes ``0.5 * (<logp> - <ref_logp>) ** 2`` or ``<logp> - <ref_logp>`` with exactly the
expressions the user wrote: the operands of the log-ratio inside the estimator (``ref_logp - logp``,
``torch.exp(logp) / torch.exp(ref_logp)``), followed through plain local assignments
(``log_ratio = ref_logp - logp`` then ``log_ratio.exp() - log_ratio - 1``).  Which operand is the
policy's and which the reference's comes from the term's roles (the analyzer's names), then from the
naming conventions of :mod:`klaudit.vocabulary`, then from the local definitions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import libcst as cst

from .. import vocabulary as vocab
from ..model import KLTerm
from .tree import ParsedFile, walk

POLICY_SIDE = ("policy", "old")  # the log-prob the samples' side uses (rollout log-probs for a reward)
PASS_THROUGH = {"detach", "float", "double", "half", "bfloat16", "to", "clone", "contiguous", "squeeze",
                "unsqueeze", "view", "reshape", "type", "cpu", "cuda", "type_as", "view_as"}
NO_GRAD = ("no_grad", "inference_mode")
MAX_DEPTH = 4


@dataclass(frozen=True)
class LogRatio:
    """The two sides of the log-ratio a KL estimator is built on."""

    policy: cst.BaseExpression  # the policy's (or, for a reward built from rollouts, the rollout's) log-probs
    ref: cst.BaseExpression  # the anchor's log-probs
    policy_code: str
    ref_code: str
    subtraction: Optional[cst.BinaryOperation]  # ``a - b`` written inside the estimator itself
    detached: bool  # reached through a ``.detach()`` or a ``no_grad`` block on the way


def key_of(node: cst.BaseExpression) -> Optional[str]:
    """The name a tensor expression is known by: ``logp``, ``self.ref_logp`` -> ``ref_logp``,
    ``batch["old_logprobs"]`` -> ``old_logprobs``, ``logp[:, 1:].detach()`` -> ``logp``."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return node.attr.value
    if isinstance(node, cst.Subscript):
        if len(node.slice) == 1 and isinstance(node.slice[0].slice, cst.Index):
            v = node.slice[0].slice.value
            if isinstance(v, cst.SimpleString):
                try:
                    s = v.evaluated_value
                except Exception:  # noqa: BLE001 - an odd string literal: no key
                    s = None
                if isinstance(s, str):
                    return s
        return key_of(node.value)
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value in PASS_THROUGH:
        return key_of(node.func.value)
    return None


def is_detach(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == "detach"


def under_no_grad(pf: ParsedFile, node: cst.CSTNode) -> bool:
    """Inside ``with torch.no_grad():`` or a function decorated ``@torch.no_grad()``."""
    for a in pf.ancestors(node):
        if isinstance(a, cst.With):
            for item in a.items:
                if any(n in pf.code(item.item) for n in NO_GRAD):
                    return True
        if isinstance(a, cst.FunctionDef):
            return any(any(n in pf.code(d.decorator) for n in NO_GRAD) for d in a.decorators)
    return False


class Operands:
    """Finds log-prob expressions in one function of one file, for one term."""

    def __init__(self, pf: ParsedFile, term: KLTerm, scope: cst.CSTNode, line: int):
        self.pf = pf
        self.term = term
        self.scope = scope
        self.line = line  # definitions are those before this line
        self.named = {}
        for role, name, _ in term.roles:
            if "(" not in name and name.isidentifier():
                self.named.setdefault(name, role)

    # -------------------------------------------------------------------------------- roles
    def role(self, node: cst.BaseExpression, depth: int = 0) -> Optional[str]:
        """'policy', 'ref', 'old', 'teacher' or None for a tensor expression."""
        key = key_of(node)
        if key is not None:
            if key in self.named:
                return self.named[key]
            r = vocab.logp_role(key)
            if r is not None:
                return r[0]
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and \
                node.func.attr.value in PASS_THROUGH:
            return self.role(node.func.value, depth)
        if isinstance(node, cst.Name) and depth < MAX_DEPTH:
            d = self.pf.definition(self.scope, node.value, self.line)
            if d is not None:
                r = self.role(d, depth + 1)
                if r is not None:
                    return r
                return self._model_role(d)
        return None

    def _model_role(self, d: cst.BaseExpression) -> Optional[str]:
        """log-probs computed from logits: the role the logits' names give (``ref_logits`` -> ref)."""
        code = self.pf.code(d)
        if "log_softmax" not in code and "logprobs_from_logits" not in code and "gather" not in code:
            return None
        roles = set()
        for n in walk(d):
            if isinstance(n, cst.Name):
                toks = vocab.tokens(n.value)
                if "logits" in toks or "logit" in toks:
                    roles.add(vocab.anchor_role(toks) or "policy")
        return roles.pop() if len(roles) == 1 else None

    # ---------------------------------------------------------------------------- log-ratio
    def log_ratio(self, est: cst.BaseExpression) -> Optional[LogRatio]:
        """The one log-ratio ``est`` is built on (all occurrences must agree), or None."""
        found: List[LogRatio] = []
        self._search(est, True, False, 0, set(), found)
        if not found:
            return None
        keys = {(f.policy_code, f.ref_code) for f in found}
        if len(keys) != 1:
            return None
        direct = [f for f in found if f.subtraction is not None]
        return direct[0] if direct else found[0]

    def _search(self, node, direct: bool, detached: bool, depth: int, seen: set, out: List[LogRatio]) -> None:
        skip = set()
        for n in walk(node, skip_scopes=True):
            if id(n) in skip:
                continue
            if isinstance(n, cst.Attribute):
                skip.add(id(n.attr))
            if isinstance(n, cst.BinaryOperation) and isinstance(n.operator, cst.Subtract):
                pair = self._pair(n.left, n.right)
                if pair is not None:
                    p, r = pair
                    out.append(LogRatio(p, r, self.pf.code(p).strip(), self.pf.code(r).strip(),
                                        n if direct else None, detached))
                    continue
            if isinstance(n, cst.BinaryOperation) and isinstance(n.operator, cst.Divide):
                a, b = _exp_arg(n.left), _exp_arg(n.right)
                if a is not None and b is not None:
                    pair = self._pair(a, b)
                    if pair is not None:
                        p, r = pair
                        out.append(LogRatio(p, r, self.pf.code(p).strip(), self.pf.code(r).strip(), None, detached))
                        continue
            if isinstance(n, cst.Name) and n.value not in seen and depth < MAX_DEPTH:
                d = self.pf.definition(self.scope, n.value, self.line)
                if d is not None:
                    det = detached or is_detach(d) or under_no_grad(self.pf, d)
                    self._search(d, False, det, depth + 1, seen | {n.value}, out)

    def _pair(self, a: cst.BaseExpression, b: cst.BaseExpression) -> Optional[Tuple[cst.BaseExpression, ...]]:
        """(policy side, anchor side) when ``a - b`` or ``b - a`` is the KL's log-ratio."""
        anchor = self.term.derivation.anchor or "ref"
        ra, rb = self.role(a), self.role(b)
        if ra in POLICY_SIDE and rb == anchor:
            return a, b
        if rb in POLICY_SIDE and ra == anchor:
            return b, a
        # one side known, the other a plain tensor name the analyzer did not name
        simple = (cst.Name, cst.Attribute, cst.Subscript)
        if ra == anchor and rb is None and isinstance(b, simple):
            return b, a
        if rb == anchor and ra is None and isinstance(a, simple):
            return a, b
        return None

    # ------------------------------------------------------------------------ importance ratio
    def rollout(self) -> Optional[str]:
        """The rollout (old) log-probs the function has: by the term's roles, else a parameter named so."""
        for role, name, _ in self.term.roles:
            if role == "old" and name.isidentifier() and self._visible(name):
                return name
        if isinstance(self.scope, cst.FunctionDef):
            p = self.scope.params
            names = [x.name.value for x in (*p.posonly_params, *p.params, *p.kwonly_params)]
            old = [n for n in names if (vocab.logp_role(n) or ("", ""))[0] == "old"]
            if len(old) == 1:
                return old[0]
        return None

    def _visible(self, name: str) -> bool:
        values, other = self.pf.bindings(self.scope, name, self.line)
        return bool(values) or other

    def ratio(self, policy_code: str) -> Optional[Tuple[Optional[str], str]]:
        """(name of the function's own per-token ratio exp(logp - old) if it has one, else None;
        the expression of that ratio)."""
        body = getattr(self.scope, "body", None)
        if body is None:
            return None
        for n in walk(body, skip_scopes=True):
            if not isinstance(n, cst.Assign) or len(n.targets) != 1 or not isinstance(n.targets[0].target, cst.Name):
                continue
            r = self.pf.range(n)
            if r is None or r[0] >= self.line:
                continue
            arg = _exp_arg(n.value)
            if isinstance(arg, cst.Name):  # log_ratio = logp - old_logp; ratio = log_ratio.exp()
                arg = self.pf.definition(self.scope, arg.value, self.line)
            if not (isinstance(arg, cst.BinaryOperation) and isinstance(arg.operator, cst.Subtract)):
                continue
            if self.role(arg.left) == "policy" and self.role(arg.right) == "old":
                name = n.targets[0].target.value
                expr = self.pf.code(n.value).strip()
                if self.pf.definition(self.scope, name, self.line) is n.value:
                    return name, expr
                return None, expr
        old = self.rollout()
        if old is None:
            return None
        return None, f"{exp_function(self.pf)}({policy_code} - {old})" if exp_function(self.pf) else \
            f"({policy_code} - {old}).exp()"


def _exp_arg(node: cst.BaseExpression) -> Optional[cst.BaseExpression]:
    """``x`` in ``torch.exp(x)``, ``exp(x)``, ``x.exp()``."""
    if not isinstance(node, cst.Call):
        return None
    f = node.func
    if isinstance(f, cst.Attribute) and f.attr.value == "exp":
        if not node.args:
            return f.value
        if len(node.args) == 1 and node.args[0].keyword is None:
            return node.args[0].value
    if isinstance(f, cst.Name) and f.value == "exp" and len(node.args) == 1 and node.args[0].keyword is None:
        return node.args[0].value
    return None


def exp_function(pf: ParsedFile) -> Optional[str]:
    """``torch.exp`` when the module imports torch as ``torch``."""
    for st in pf.module.body:
        if isinstance(st, cst.SimpleStatementLine):
            for s in st.body:
                if isinstance(s, cst.Import):
                    for a in s.names:
                        if pf.code(a.name) == "torch" and (a.asname is None or pf.code(a.asname.name) == "torch"):
                            return "torch.exp"
    return None
