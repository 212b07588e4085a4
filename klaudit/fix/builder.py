"""Fixes for the findings of one term: compose the fix kinds, write them into the source, check them.

``Fixer.attach(term, findings)`` is what the engine asks when fixes are requested.  It builds one
edit for all fixable findings of the term (they concern the same expression), writes it with libcst
into a copy of the tree, keeps it only when the result parses, touches only the statements concerned
and re-lints clean for those rules (:mod:`klaudit.fix.verify`), and attaches it as an unsafe
``Fix``: every one of these changes training dynamics.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, FrozenSet, List, Optional, Tuple

import libcst as cst

from ..model import Finding, Fix, KLTerm
from . import detach, importance_weight, k1_reward, k2_loss, sign
from .operands import Operands
from .rewrite import Rewrite, Site
from .syntax import ADD, MUL, atom, fit, operand_text, parenthesized, parse, precedence, with_parens
from .tree import ParsedFile, parse_file, parse_text
from .verify import Verifier

# the order the kinds compose in: the estimator first, then what wraps it, then the placement
KINDS = (k2_loss, k1_reward, importance_weight, detach, sign)
FIXABLE = frozenset(c for k in KINDS for c in k.CODES)


class Fixer:
    def __init__(self, cfg):
        self.cfg = cfg
        self.verifier = Verifier(cfg)
        self._files: Dict[str, Optional[ParsedFile]] = {}
        self._built: Dict[Tuple, Tuple[Optional[Fix], FrozenSet[str]]] = {}
        self.rejected: List[Tuple[str, int, str]] = []  # (path, line, why) of fixes that failed their checks

    def attach(self, term: KLTerm, findings: List[Finding]) -> List[Finding]:
        """``findings`` (all of ``term``) with the term's fix attached to those it fixes."""
        codes = frozenset(f.code for f in findings if f.code in FIXABLE and f.fix is None)
        if not codes:
            return findings
        key = (term.loc, codes)
        if key not in self._built:
            try:
                self._built[key] = self.build(term, codes)
            except Exception as e:  # noqa: BLE001 - a fix that cannot be built is no fix, never a traceback
                self.rejected.append((term.loc.path, term.loc.line, f"internal error: {type(e).__name__}: {e}"))
                self._built[key] = (None, frozenset())
        fix, fixed = self._built[key]
        if fix is None:
            return findings
        return [dataclasses.replace(f, fix=fix) if f.code in fixed and f.fix is None else f for f in findings]

    # ------------------------------------------------------------------------------------ build
    def build(self, term: KLTerm, codes: FrozenSet[str]) -> Tuple[Optional[Fix], FrozenSet[str]]:
        if not fixable_term(term):
            return None, frozenset()
        pf = self._file(term.loc.path)
        if pf is None:
            return None, frozenset()
        site = make_site(pf, term)
        if site is None:
            return None, frozenset()
        rw = Rewrite()
        fixed = set()
        for kind in KINDS:
            mine = codes & set(kind.CODES)
            if mine and kind.apply(site, rw):
                fixed |= mine
        if not fixed:
            return None, frozenset()
        fixed = frozenset(fixed)
        new = render(site, rw)
        if new is None:
            return None, frozenset()
        edit = line_edit(pf.text, new)
        if edit is None:
            return None, frozenset()
        start, end, lines = edit
        allowed = allowed_lines(site, rw)
        if start < allowed[0] or end > allowed[1]:
            return None, frozenset()
        delta = len(lines) - (end - start + 1)
        span = (allowed[0], allowed[1] + delta)
        latent = rw.grad is None and not rw.weight and not rw.detach  # only the sign changed
        why = self.verifier.check(term, fixed, pf.path, pf.text, new, allowed, span, latent)
        if why is not None:
            self.rejected.append((pf.path, term.loc.line, why))
            return None, frozenset()
        fixed |= codes - self.verifier.lint(pf.path, new).codes(span)  # also fixed on the way (w * k3: KL102)
        desc = "; ".join(rw.notes)
        desc = desc[0].upper() + desc[1:] + "."
        return Fix(pf.path, start, end, "".join(ln + "\n" for ln in lines), desc, unsafe=True), fixed

    def _file(self, path: str) -> Optional[ParsedFile]:
        if path not in self._files:
            self._files[path] = parse_file(path)
        return self._files[path]


def fixable_term(t: KLTerm) -> bool:
    """A term written where it is used: not a helper's (whose fix would change every caller), not one
    whose options change what it computes (``if use_bias_correction_kl: kl = kl * ratio``: a rewrite
    would change what every option means; options that only switch it on, ``if beta != 0``, are fine),
    not in a notebook."""
    if not t.loc.path.endswith((".py", ".pyi")):
        return False
    if t.via or t.definition is not None or t.callers or t.chain or t.report_at_use:
        return False
    versions = {(v.loc, v.derivation.key, v.placement) for v in t.variants if v.reachable}
    return len(versions) <= 1 and all(v.loc == t.loc for v in t.variants)


def make_site(pf: ParsedFile, term: KLTerm) -> Optional[Site]:
    est = pf.node_at(term.loc)
    if est is None:
        return None
    est = _with_constant(pf, est)
    scope = pf.function(est) or pf.module
    lines = pf.statement_lines(est)
    if lines is None:
        return None
    target = assigned_name(pf, est)
    if target is not None and pf.rebound_after(scope, target, lines[1]):
        return None  # ``kl = kl * ratio`` later (under an option): a rewrite here would compose with it
    ops = Operands(pf, term, scope, lines[0])
    return Site(pf, term, est, scope, ops, ops.log_ratio(est), term.derivation.value_scale)


def assigned_name(pf: ParsedFile, est: cst.BaseExpression) -> Optional[str]:
    """``kl`` when the estimator is the whole value of ``kl = <estimator>``."""
    p = pf.parent(est)
    if isinstance(p, cst.Assign) and p.value is est and len(p.targets) == 1 and \
            isinstance(p.targets[0].target, cst.Name):
        return p.targets[0].target.value
    return None


def _with_constant(pf: ParsedFile, est: cst.BaseExpression) -> cst.BaseExpression:
    """``0.5 * x``, ``x * 0.5``, ``x / 2`` when the analyzer points at ``x``: its ``value_scale``
    counts that constant (k2's 1/2), so the rewrite replaces it too."""
    p = pf.parent(est)
    if isinstance(p, cst.BinaryOperation):
        other = p.right if p.left is est else p.left
        if isinstance(other, (cst.Integer, cst.Float)) and (
                isinstance(p.operator, cst.Multiply) or (isinstance(p.operator, cst.Divide) and p.left is est)):
            return p
    return est


def render(site: Site, rw: Rewrite) -> Optional[str]:
    """The new module text, or None when the composed expression does not parse."""
    pf = site.pf
    replace: Dict[int, Optional[cst.CSTNode]] = {}
    if rw.grad is not None or rw.weight or rw.detach:
        node = _expression(site, rw)
        if node is None:
            return None
        replace[id(site.est)] = node
    elif rw.swap is not None:
        s = rw.swap
        swapped = s.with_changes(left=_operand(s.right, ADD), right=_operand(s.left, MUL))
        replace[id(s)] = swapped  # only the operands move: the node keeps its parentheses and spacing
    if rw.flip is not None:
        replace[id(rw.flip)] = None  # marker: flip its operator after its children are rewritten
    if not replace:
        return None

    class _Edit(cst.CSTTransformer):
        def on_leave(self, original_node, updated_node):
            k = id(original_node)
            if k not in replace:
                return updated_node
            if replace[k] is None:
                return sign.flipped(updated_node)
            return replace[k]

    new = pf.module.visit(_Edit()).code
    return new if parse_text(pf.path, new) is not None else None


def _expression(site: Site, rw: Rewrite) -> Optional[cst.BaseExpression]:
    """The composed expression that replaces the estimator.

    Written on one line, or, when the user wrapped the estimator in parentheses over several lines,
    in the same layout (one term of a straight-through form per line); a straight-through form that
    would make the line longer than any line of the file gets that layout too."""
    pf = site.pf
    text = rw.grad if rw.grad is not None else _bare(pf, site.est)
    if rw.weight:
        text = f"{rw.weight} * {operand_text(text, None, MUL + 1)}"
    lines = [text]
    if rw.value is not None:
        lines = [text, f"- {atom(text)}.detach()", f"+ {atom(rw.value)}.detach()"]
    layout = _layout(pf, site.est)
    if layout is None and len(lines) > 1 and _too_long(pf, site.est, " ".join(lines)):
        layout = _statement_layout(pf, site.est)
    if layout is not None:
        inner, close = layout
        code = "(\n" + "".join(inner + ln + "\n" for ln in lines) + close + ")"
        if rw.detach:
            code += ".detach()"
        return parse(code)
    code = " ".join(lines)
    if rw.detach:
        code = f"{atom(code)}.detach()"
    node = parse(code)
    return None if node is None else fit(node, site.est, pf.parent(site.est))


def _too_long(pf: ParsedFile, est: cst.BaseExpression, code: str) -> bool:
    r = pf.range(est)
    lines = pf.text.split("\n")
    if r is None or r[0] != r[2]:
        return False
    line = lines[r[0] - 1]
    limit = max(88, max(len(ln) for ln in lines))
    return len(line[:r[1] - 1]) + len(code) + len(line[r[3] - 1:]) > limit


def _statement_layout(pf: ParsedFile, est: cst.BaseExpression) -> Optional[Tuple[str, str]]:
    """(one indentation step, nothing) for the whole value of an assignment or a return."""
    p = pf.parent(est)
    if isinstance(p, (cst.Assign, cst.AnnAssign, cst.AugAssign, cst.Return)) and p.value is est and \
            not parenthesized(est):
        return pf.module.default_indent, ""
    return None


def _bare(pf: ParsedFile, node: cst.BaseExpression) -> str:
    """The source of ``node`` without its own outer parentheses."""
    return pf.module.code_for_node(node.with_changes(lpar=[], rpar=[])).strip()


def _layout(pf: ParsedFile, est: cst.BaseExpression) -> Optional[Tuple[str, str]]:
    """(indentation of the content, of the closing parenthesis) when ``est`` is written
    ``(`` newline ... newline ``)``; else None."""
    if not parenthesized(est) or len(est.lpar) != 1:
        return None
    if not isinstance(est.lpar[0].whitespace_after, cst.ParenthesizedWhitespace):
        return None
    r = pf.range(est)
    lines = pf.text.split("\n")
    if r is None or r[2] - r[0] < 2:
        return None
    first, last = lines[r[0]], lines[r[2] - 1]
    inner = first[:len(first) - len(first.lstrip())]
    close = last[:len(last) - len(last.lstrip())]
    if last.strip()[:1] != ")":
        return None
    # libcst writes these lines after the enclosing block's indentation: keep what comes after it
    st = pf.range(pf.statement(est))
    head = lines[st[0] - 1] if st else ""
    block = head[:len(head) - len(head.lstrip())]
    if not (inner.startswith(block) and close.startswith(block)):
        return None
    return inner[len(block):], close[len(block):]


def _operand(node: cst.BaseExpression, need: int) -> cst.BaseExpression:
    """``node`` moved into an operand slot that needs precedence ``need``."""
    return node if parenthesized(node) or precedence(node) >= need else with_parens(node)


def allowed_lines(site: Site, rw: Rewrite) -> Tuple[int, int]:
    """The statements a fix may touch: the estimator's, and the placement's when the sign flips."""
    pf = site.pf
    lo, hi = pf.statement_lines(site.est)
    if rw.flip is not None:
        r = pf.statement_lines(rw.flip)
        if r is not None:
            lo, hi = min(lo, r[0]), max(hi, r[1])
    return lo, hi


def line_edit(old: str, new: str) -> Optional[Tuple[int, int, List[str]]]:
    """(first line, last line, replacement lines) of the one region where ``new`` differs from ``old``."""
    a, b = old.split("\n"), new.split("\n")
    if a == b:
        return None
    p = 0
    while p < min(len(a), len(b)) and a[p] == b[p]:
        p += 1
    s = 0
    while s < min(len(a), len(b)) - p and a[len(a) - 1 - s] == b[len(b) - 1 - s]:
        s += 1
    start, end = p + 1, len(a) - s
    if end < start:
        return None  # pure insertion: never produced by these fixes
    return start, end, b[p:len(b) - s]
