"""The per-file pass: parse once, evaluate every function (and the module body) into summaries."""
from __future__ import annotations

from typing import List

from .. import positions
from ..parse import parse_module
from ..source import SourceText
from . import configs
from .context import ModuleContext, dotted
from .evaluator import Evaluator
from .summary import ClassSummary, ModuleSummary


def extract(src: SourceText, module: str, is_package: bool = False, tree=None) -> ModuleSummary:
    import libcst as cst

    if tree is None:
        tree = parse_module(src.text)
    pos = positions.compute(tree)
    ctx = ModuleContext(src.path, module, src.text, tree, pos, is_package)
    ms = ModuleSummary(path=src.path, module=module, imports=dict(ctx.imports), lines=src.text.count("\n") + 1)
    todo: List = []
    body_stmts = []
    for stmt in tree.body:
        if isinstance(stmt, cst.FunctionDef):
            todo.append((stmt, f"{module}.{stmt.name.value}", None, None, ()))
        elif isinstance(stmt, cst.ClassDef):
            _class(ctx, ms, stmt, module, todo)
        else:
            body_stmts.append(stmt)
    # functions guarded by if/try at module level
    for name, node in ctx.functions.items():
        if node not in [t[0] for t in todo]:
            todo.append((node, f"{module}.{name}", None, None, ()))
    while todo:
        node, qual, cls, outer_env, bases = todo.pop(0)
        ev = Evaluator(ctx, node, qual, cls, outer_env, bases)
        try:
            fs = ev.run_function()
        except RecursionError:
            continue
        ms.functions[qual] = fs
        ms.config_defaults.extend(ev.config_defaults)
        for sub, env, subq in ev.nested:
            todo.append((sub, subq, None, env, ()))
    if body_stmts:
        ev = Evaluator(ctx, tree, f"{module}.<module>")
        try:
            fs = ev.run_module_body(body_stmts)
            if fs.events:
                ms.functions[fs.qualname] = fs
            for sub, env, subq in ev.nested:
                ev2 = Evaluator(ctx, sub, subq, None, env)
                ms.functions[subq] = ev2.run_function()
            ms.exports.update({k: v for k, v in ev.env.items()})
            ms.config_defaults.extend(ev.config_defaults)
        except RecursionError:
            pass
    return ms


def _class(ctx: ModuleContext, ms: ModuleSummary, node, prefix: str, todo: List) -> None:
    import libcst as cst

    qual = f"{prefix}.{node.name.value}"
    bases = []
    for b in node.bases:
        d = dotted(b.value)
        if d:
            q = None
            head = d.split(".")[0]
            if head in ctx.imports:
                q = ctx.imports[head] + d[len(head):]
            elif head in ctx.classes:
                q = f"{ctx.module}.{d}"
            bases.append(q or d)
    is_dc = any((dotted(d.decorator.func if isinstance(d.decorator, cst.Call) else d.decorator) or "").endswith(
        "dataclass") for d in node.decorators)
    methods = []
    fields = []
    body = node.body.body if isinstance(node.body, cst.IndentedBlock) else []
    for s in body:
        if isinstance(s, cst.FunctionDef):
            methods.append(s.name.value)
            todo.append((s, f"{qual}.{s.name.value}", qual, None, tuple(bases)))
        elif isinstance(s, cst.ClassDef):
            _class(ctx, ms, s, qual, todo)
    ms.config_defaults.extend(configs.from_class(ctx, node))
    ms.classes[qual] = ClassSummary(qual, node.name.value, tuple(bases), tuple(methods), tuple(fields), is_dc,
                                    ctx.loc(node.name))
