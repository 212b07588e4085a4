"""One source file as the fixes see it: its libcst tree, every node's range and parent, and the local
bindings of its functions.

Ranges are those of :mod:`klaudit.positions` (1-based lines and columns, end column exclusive), the
same the analyzer writes into ``KLTerm.loc``, so a term's location finds its node exactly.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import libcst as cst

from ..ir import Loc
from ..positions import Range, compute

SCOPES = (cst.FunctionDef, cst.ClassDef, cst.Lambda)


class _Parents(cst.CSTVisitor):
    def __init__(self) -> None:
        self.stack: List[cst.CSTNode] = []
        self.parent: Dict[int, cst.CSTNode] = {}

    def on_visit(self, node: cst.CSTNode) -> bool:
        if self.stack:
            self.parent[id(node)] = self.stack[-1]
        self.stack.append(node)
        return True

    def on_leave(self, original_node: cst.CSTNode) -> None:
        self.stack.pop()


class ParsedFile:
    """``text`` (newlines normalised to "\\n"), ``module``, node ranges and parents."""

    def __init__(self, path: str, text: str, module: cst.Module):
        self.path = path
        self.text = text
        self.module = module
        self.ranges: Dict[int, Range] = compute(module)
        v = _Parents()
        module.visit(v)
        self._parent = v.parent
        self._by_range: Dict[Range, List[cst.CSTNode]] = {}
        for node in _walk(module):
            r = self.ranges.get(id(node))
            if r is not None and isinstance(node, cst.BaseExpression):
                self._by_range.setdefault(r, []).append(node)

    # ------------------------------------------------------------------------------- navigation
    def parent(self, node: cst.CSTNode) -> Optional[cst.CSTNode]:
        return self._parent.get(id(node))

    def ancestors(self, node: cst.CSTNode):
        p = self.parent(node)
        while p is not None:
            yield p
            p = self.parent(p)

    def range(self, node: cst.CSTNode) -> Optional[Range]:
        return self.ranges.get(id(node))

    def node_at(self, loc: Loc) -> Optional[cst.BaseExpression]:
        """The outermost expression whose range is exactly ``loc``."""
        nodes = self._by_range.get((loc.line, loc.col, loc.end_line, loc.end_col))
        return nodes[0] if nodes else None  # _walk is pre-order: the outermost comes first

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)

    def statement(self, node: cst.CSTNode) -> Optional[cst.CSTNode]:
        """The simple statement line (or compound statement header) holding ``node``."""
        for a in [node, *self.ancestors(node)]:
            if isinstance(a, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
                return a
        return None

    def statement_lines(self, node: cst.CSTNode) -> Optional[Tuple[int, int]]:
        st = self.statement(node)
        if st is None:
            return None
        if isinstance(st, cst.BaseCompoundStatement):
            r = self.range(node)  # a compound statement: only the expression's own lines
        else:
            r = self.range(st)
        return (r[0], r[2]) if r else None

    def function(self, node: cst.CSTNode) -> Optional[cst.FunctionDef]:
        for a in self.ancestors(node):
            if isinstance(a, cst.FunctionDef):
                return a
        return None

    # -------------------------------------------------------------------------------- bindings
    def bindings(self, scope: cst.CSTNode, name: str, before_line: int) -> Tuple[List[cst.BaseExpression], bool]:
        """(values of the simple ``name = value`` assignments in ``scope`` before ``before_line``,
        whether ``name`` is also bound some other way there: a parameter, a loop, ``with ... as``,
        an augmented or unpacking assignment)."""
        values: List[cst.BaseExpression] = []
        other = False
        if isinstance(scope, cst.FunctionDef):
            params = scope.params
            for p in [*params.posonly_params, *params.params, *params.kwonly_params]:
                if p.name.value == name:
                    other = True
            for p in (params.star_arg, params.star_kwarg):
                if isinstance(p, cst.Param) and p.name.value == name:
                    other = True
        for node in _walk(scope.body if hasattr(scope, "body") else scope, skip_scopes=True):
            r = self.range(node)
            if r is None or r[0] >= before_line:
                continue
            if isinstance(node, cst.Assign):
                for t in node.targets:
                    if isinstance(t.target, cst.Name) and t.target.value == name and len(node.targets) == 1:
                        values.append(node.value)
                    elif _binds(t.target, name):
                        other = True
            elif isinstance(node, cst.AnnAssign) and isinstance(node.target, cst.Name) and node.target.value == name:
                if node.value is not None:
                    values.append(node.value)
            elif isinstance(node, cst.AugAssign) and _binds(node.target, name):
                other = True
            elif isinstance(node, (cst.For, cst.CompFor)) and _binds(node.target, name):
                other = True
            elif isinstance(node, cst.AsName) and _binds(node.name, name):
                other = True
            elif isinstance(node, cst.NamedExpr) and _binds(node.target, name):
                other = True
        return values, other

    def rebound_after(self, scope: cst.CSTNode, name: str, line: int) -> bool:
        """``name`` is assigned again (in any way) after ``line`` in ``scope``."""
        body = scope.body if hasattr(scope, "body") else scope
        for node in _walk(body, skip_scopes=True):
            r = self.range(node)
            if r is None or r[0] <= line:
                continue
            if isinstance(node, cst.Assign) and any(_binds(t.target, name) for t in node.targets):
                return True
            if isinstance(node, (cst.AnnAssign, cst.AugAssign, cst.For, cst.CompFor, cst.NamedExpr)) and \
                    _binds(node.target, name):
                return True
            if isinstance(node, cst.AsName) and _binds(node.name, name):
                return True
        return False

    def definition(self, scope: cst.CSTNode, name: str, before_line: int) -> Optional[cst.BaseExpression]:
        """The value of the one plain assignment binding ``name`` before ``before_line``, or None."""
        values, other = self.bindings(scope, name, before_line)
        return values[0] if len(values) == 1 and not other else None


def _binds(target: cst.CSTNode, name: str) -> bool:
    if isinstance(target, cst.Name):
        return target.value == name
    if isinstance(target, (cst.Tuple, cst.List)):
        return any(_binds(e.value, name) for e in target.elements)
    if isinstance(target, cst.StarredElement):
        return _binds(target.value, name)
    return False


def _walk(node: cst.CSTNode, skip_scopes: bool = False):
    """Pre-order walk; with ``skip_scopes`` nested functions, classes and lambdas are not entered."""
    stack = [node] if not isinstance(node, (list, tuple)) else list(reversed(node))
    while stack:
        n = stack.pop()
        yield n
        if skip_scopes and isinstance(n, SCOPES):
            continue
        stack.extend(reversed(n.children))


def walk(node: cst.CSTNode, skip_scopes: bool = False):
    return _walk(node, skip_scopes)


def parse_file(path: str) -> Optional[ParsedFile]:
    """The file as the analyzer read it, or None when it cannot be read or parsed."""
    from ..parse import parse_module
    from ..source import SourceError, load

    try:
        src = load(path)
        return ParsedFile(path, src.text, parse_module(src.text))
    except (SourceError, RecursionError, MemoryError):
        return None


def parse_text(path: str, text: str) -> Optional[ParsedFile]:
    from ..parse import parse_module
    from ..source import SourceError

    try:
        return ParsedFile(path, text, parse_module(text))
    except (SourceError, RecursionError, MemoryError):
        return None
