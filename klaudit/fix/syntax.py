"""Writing new expressions into the user's code: operator precedence and parentheses.

New expressions are written as text from the user's own sub-expressions (their exact source), parsed
with libcst, and put in place of the old node with parentheses exactly where precedence needs them
(and the old node's own parentheses kept).
"""
from __future__ import annotations

from typing import Optional

import libcst as cst

_BINARY = {
    cst.BitOr: 1, cst.BitXor: 2, cst.BitAnd: 3, cst.LeftShift: 4, cst.RightShift: 4, cst.Add: 5, cst.Subtract: 5,
    cst.Multiply: 6, cst.Divide: 6, cst.FloorDivide: 6, cst.Modulo: 6, cst.MatrixMultiply: 6, cst.Power: 8,
}
ADD = 5  # what the left operand of ``a - b`` needs
MUL = 6  # what the right operand of ``a - b`` (and an operand of ``*``) needs
UNARY = 7
ATOM = 10
LOOSE = 0  # lambda, conditional expressions, boolean operations, comparisons, walrus


def precedence(node: cst.BaseExpression) -> int:
    """How tightly ``node`` binds when written without its own parentheses."""
    if isinstance(node, cst.BinaryOperation):
        return _BINARY.get(type(node.operator), LOOSE)
    if isinstance(node, cst.UnaryOperation):
        return LOOSE if isinstance(node.operator, cst.Not) else UNARY
    if isinstance(node, (cst.BooleanOperation, cst.Comparison, cst.IfExp, cst.Lambda, cst.NamedExpr, cst.Yield,
                         cst.Await, cst.StarredElement)):
        return LOOSE
    return ATOM


def parenthesized(node: cst.BaseExpression) -> bool:
    return bool(getattr(node, "lpar", ()))


def with_parens(node: cst.BaseExpression) -> cst.BaseExpression:
    if parenthesized(node):
        return node
    return node.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


def operand_text(code: str, node: Optional[cst.BaseExpression], min_prec: int) -> str:
    """``code`` (the source of ``node``) as an operand that needs precedence ``min_prec``."""
    if node is not None and (parenthesized(node) or precedence(node) >= min_prec):
        return code
    if node is None:
        try:
            node = cst.parse_expression(code)
        except cst.ParserSyntaxError:
            return f"({code})"
        if parenthesized(node) or precedence(node) >= min_prec:
            return code
    return f"({code})"


def atom(code: str, node: Optional[cst.BaseExpression] = None) -> str:
    """``code`` usable before ``.method()``."""
    return operand_text(code, node, ATOM)


def required(parent: Optional[cst.CSTNode], child: cst.CSTNode) -> int:
    """The least precedence an expression put in place of ``child`` needs in ``parent``."""
    if isinstance(parent, cst.BinaryOperation):
        p = _BINARY.get(type(parent.operator), LOOSE)
        if isinstance(parent.operator, cst.Power):
            return p + 1 if parent.left is child else UNARY  # right-associative; -x allowed on the right
        return p if parent.left is child else p + 1
    if isinstance(parent, cst.UnaryOperation):
        return LOOSE + 1 if isinstance(parent.operator, cst.Not) else UNARY
    if isinstance(parent, cst.Attribute) and parent.value is child:
        return ATOM
    if isinstance(parent, cst.Call) and parent.func is child:
        return ATOM
    if isinstance(parent, cst.Subscript) and parent.value is child:
        return ATOM
    if isinstance(parent, (cst.Assign, cst.AnnAssign, cst.AugAssign, cst.Return, cst.Arg, cst.Expr, cst.Element,
                           cst.DictElement, cst.Index, cst.Param, cst.Yield, cst.FormattedStringExpression)):
        return LOOSE
    return ATOM  # anywhere else: parenthesize anything that is not an atom


def fit(new: cst.BaseExpression, old: cst.BaseExpression, parent: Optional[cst.CSTNode]) -> cst.BaseExpression:
    """``new`` ready to replace ``old`` under ``parent``: ``old``'s parentheses are kept around a new
    operation, and new ones added where precedence needs them."""
    if parenthesized(old):
        if parenthesized(new) or precedence(new) == ATOM:
            return new  # an atom needs no parentheses (a builder that kept the old text kept its own)
        return new.with_changes(lpar=old.lpar, rpar=old.rpar)
    if precedence(new) < required(parent, old):
        return with_parens(new)
    return new


def parse(code: str) -> Optional[cst.BaseExpression]:
    try:
        return cst.parse_expression(code)
    except (cst.ParserSyntaxError, RecursionError):
        return None
