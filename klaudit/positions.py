"""Line and column numbers for CST nodes, computed by one light code-generation pass.

libcst's PositionProvider builds a CodeRange object per node through a metadata wrapper; on real
training files that costs several times the parse itself.  This pass records plain tuples and is
run only for files the analysis actually evaluates.  Columns are 1-based.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

Range = Tuple[int, int, int, int]  # start line, start col (1-based), end line, end col (1-based, exclusive)


def compute(module) -> Dict[int, Range]:
    """Map ``id(node)`` -> range for every node of ``module`` (whitespace owned by a statement's
    leading lines is excluded from its start)."""
    import libcst
    from libcst._nodes.internal import CodegenState

    leading = {libcst.SimpleStatementLine, libcst.If, libcst.For, libcst.While, libcst.Try, libcst.With,
               libcst.FunctionDef, libcst.ClassDef, libcst.TryStar, libcst.Match}

    class _State(CodegenState):
        __slots__ = ("line", "col", "stack", "out")

        def __init__(self) -> None:
            super().__init__(default_indent=module.default_indent, default_newline=module.default_newline)
            self.line = 1
            self.col = 0
            self.stack: list = []
            self.out: Dict[int, Range] = {}

        def add_indent_tokens(self) -> None:
            for t in self.indent_tokens:
                self.add_token(t)

        def add_token(self, value: str) -> None:
            n = value.count("\n")
            if n:
                self.line += n
                self.col = len(value) - value.rfind("\n") - 1
            else:
                self.col += len(value)

        def before_codegen(self, node) -> None:
            self.stack.append((self.line, self.col))

        def after_codegen(self, node) -> None:
            line, col = self.stack.pop()
            if type(node) in leading:  # exact types: isinstance on libcst's ABC-based nodes is slow
                skip = len(node.leading_lines)
                if skip:
                    line, col = line + skip, 0
            self.out[id(node)] = (line, col + 1, self.line, self.col + 1)

    st = _State()
    module._codegen(st)
    return st.out


def indent_fix(rng: Range, text_lines, node_is_statement: bool) -> Range:
    """Statements start after their indentation: move the column past leading blanks."""
    line, col, el, ec = rng
    if node_is_statement and 0 < line <= len(text_lines):
        s = text_lines[line - 1]
        stripped = len(s) - len(s.lstrip(" \t\f"))
        if col - 1 < stripped:
            col = stripped + 1
    return (line, col, el, ec)


def function_line(rng: Optional[Range]) -> int:
    return rng[0] if rng else 0
