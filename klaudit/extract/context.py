"""Module-level facts the evaluator needs: the module's dotted name, its imports, its top-level
functions and classes, and source locations of nodes."""
from __future__ import annotations

import os
from typing import Dict, List, Optional

from ..ir import Loc
from ..positions import Range


def module_name(path: str, root: Optional[str] = None) -> str:
    """Dotted module name of ``path`` relative to ``root`` (``a/b/__init__.py`` -> ``a.b``)."""
    p = os.path.normpath(path)
    if root:
        try:
            rel = os.path.relpath(p, os.path.normpath(root))
            if not rel.startswith(".."):
                p = rel
        except ValueError:
            pass
    p = p.replace("\\", "/")
    if p.endswith(".py"):
        p = p[:-3]
    elif p.endswith(".ipynb"):
        p = p[:-6]
    parts = [x for x in p.split("/") if x not in ("", ".")]
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    # drop a leading "src" layout folder
    if len(parts) > 1 and parts[0] == "src":
        parts = parts[1:]
    return ".".join(parts) or "__main__"


def dotted(node) -> Optional[str]:
    """``a.b.c`` for a Name/Attribute chain, else None."""
    import libcst as cst

    parts: List[str] = []
    while isinstance(node, cst.Attribute):
        parts.append(node.attr.value)
        node = node.value
    if isinstance(node, cst.Name):
        parts.append(node.value)
        return ".".join(reversed(parts))
    return None


class ModuleContext:
    def __init__(self, path: str, module: str, text: str, module_node, positions: Dict[int, Range],
                 is_package: bool = False):
        self.path = path
        self.module = module
        self.lines = text.split("\n")
        self.node = module_node
        self.positions = positions
        self.is_package = is_package
        self.imports: Dict[str, str] = {}
        self.functions: Dict[str, object] = {}
        self.classes: Dict[str, object] = {}
        self._scan()

    # ------------------------------------------------------------------ imports and definitions
    def _scan(self) -> None:
        import libcst as cst

        for stmt in self.node.body:
            if isinstance(stmt, cst.FunctionDef):
                self.functions[stmt.name.value] = stmt
            elif isinstance(stmt, cst.ClassDef):
                self.classes[stmt.name.value] = stmt
            elif isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    if isinstance(small, (cst.Import, cst.ImportFrom)):
                        self.add_import(small, self.imports)
            elif isinstance(stmt, (cst.If, cst.Try)):
                # guarded imports (try: import x / if TYPE_CHECKING: ...)
                for sub in _walk_simple(stmt):
                    if isinstance(sub, (cst.Import, cst.ImportFrom)):
                        self.add_import(sub, self.imports)
                    elif isinstance(sub, cst.FunctionDef) and sub.name.value not in self.functions:
                        self.functions[sub.name.value] = sub
                    elif isinstance(sub, cst.ClassDef) and sub.name.value not in self.classes:
                        self.classes[sub.name.value] = sub

    def package(self) -> str:
        if self.is_package:
            return self.module
        return self.module.rpartition(".")[0]

    def add_import(self, node, table: Dict[str, str]) -> None:
        import libcst as cst

        if isinstance(node, cst.Import):
            for alias in node.names:
                name = dotted(alias.name)
                if not name:
                    continue
                if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                    table[alias.asname.name.value] = name
                else:
                    table[name.split(".")[0]] = name.split(".")[0]
            return
        # from X import a as b
        level = len(node.relative) if node.relative else 0
        base = dotted(node.module) if node.module is not None else ""
        if level:
            pkg = self.package().split(".") if self.package() else []
            if level > 1:
                pkg = pkg[: len(pkg) - (level - 1)] if level - 1 <= len(pkg) else []
            base = ".".join([p for p in pkg if p] + ([base] if base else []))
        if isinstance(node.names, cst.ImportStar):
            table.setdefault("*" + base, base)
            return
        for alias in node.names:
            name = dotted(alias.name)
            if not name:
                continue
            local = name
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                local = alias.asname.name.value
            table[local] = f"{base}.{name}" if base else name

    # ------------------------------------------------------------------------------- locations
    def loc(self, node) -> Loc:
        r = self.positions.get(id(node))
        if r is None:
            return Loc(self.path, 0, 0, 0, 0)
        line, col, el, ec = r
        # statements and expressions start after indentation / leading spaces
        if 0 < line <= len(self.lines):
            s = self.lines[line - 1]
            if col - 1 < len(s) and s[col - 1:col] in (" ", "\t", "\f"):
                stripped = len(s) - len(s.lstrip(" \t\f"))
                if col - 1 < stripped:
                    col = stripped + 1
        return Loc(self.path, line, col, el, ec)

    def stmt_lines(self, node) -> tuple:
        r = self.positions.get(id(node))
        if r is None:
            return (0, 0)
        el = r[2]
        # a statement's range ends after its newline: the last line is the one before
        if r[3] == 1 and el > r[0]:
            el -= 1
        return (r[0], el)


def _walk_simple(node):
    import libcst as cst

    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, (cst.SimpleStatementLine,)):
            yield from n.body
        elif isinstance(n, (cst.FunctionDef, cst.ClassDef)):
            yield n
        elif isinstance(n, (cst.If, cst.Try, cst.IndentedBlock, cst.Else, cst.ExceptHandler, cst.Finally)):
            for attr in ("body", "orelse", "handlers", "finalbody"):
                v = getattr(n, attr, None)
                if v is None:
                    continue
                if isinstance(v, (list, tuple)):
                    stack.extend(v)
                else:
                    stack.append(v)
