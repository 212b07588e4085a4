"""Defaults of configuration options written in Python: dataclass fields, argparse ``default=``,
``config.get(key, default)`` and ``getattr(args, key, default)``.  (YAML files: ``link.configindex``.)"""
from __future__ import annotations

from typing import List

import libcst as cst

from .context import ModuleContext, dotted
from .summary import ConfigDefault

_CONFIG_BASES = ("BaseModel", "BaseSettings", "TrainingArguments", "Config", "Args", "Arguments")


def _literal(node):
    from .evaluator import _NO, _lit_of

    v = _lit_of(node)
    if v is _NO:
        if isinstance(node, cst.Call):
            fn = dotted(node.func) or ""
            if fn.split(".")[-1] == "field":
                for a in node.args:
                    if a.keyword is not None and a.keyword.value == "default":
                        return _literal(a.value)
        return _NO
    return v


def from_class(ctx: ModuleContext, node, prefix: str = "") -> List[ConfigDefault]:
    """Field defaults of a dataclass-like configuration class."""
    out: List[ConfigDefault] = []
    decos = [dotted(d.decorator.func if isinstance(d.decorator, cst.Call) else d.decorator) or ""
             for d in node.decorators]
    bases = [dotted(b.value) or "" for b in node.bases]
    configish = any(d.split(".")[-1] in ("dataclass", "define", "attrs", "frozen") for d in decos) or \
        any(b.split(".")[-1].endswith(_CONFIG_BASES) for b in bases) or node.name.value.endswith(
            ("Config", "Args", "Arguments", "Settings", "Params", "Options"))
    if not configish:
        return out
    owner = f"{prefix}{node.name.value}"
    body = node.body.body if isinstance(node.body, cst.IndentedBlock) else []
    for s in body:
        if not isinstance(s, cst.SimpleStatementLine):
            continue
        for small in s.body:
            target = value = None
            if isinstance(small, cst.AnnAssign) and isinstance(small.target, cst.Name) and small.value is not None:
                target, value = small.target.value, small.value
            elif isinstance(small, cst.Assign) and len(small.targets) == 1 and \
                    isinstance(small.targets[0].target, cst.Name):
                target, value = small.targets[0].target.value, small.value
            if target is None:
                continue
            from .evaluator import _NO

            v = _literal(value)
            if v is not _NO:
                out.append(ConfigDefault(target, v, ctx.path, ctx.loc(small).line, "dataclass", owner))
    return out


def from_call(ctx: ModuleContext, node) -> List[ConfigDefault]:
    """``parser.add_argument("--x", default=...)``, ``config.get("x", default)``, ``getattr(args, "x", d)``."""
    from .. import vocabulary as vocab
    from .evaluator import _NO, _lit_of

    fn = node.func
    line = ctx.loc(node).line
    if isinstance(fn, cst.Name):
        if fn.value == "getattr" and len(node.args) == 3:
            base = dotted(node.args[0].value) or ""
            key = _lit_of(node.args[1].value)
            v = _lit_of(node.args[2].value)
            if isinstance(key, str) and v is not _NO and any(vocab.is_config_root(p) for p in base.split(".")):
                return [ConfigDefault(key, v, ctx.path, line, "getattr")]
        return []
    if not isinstance(fn, cst.Attribute):
        return []
    meth = fn.attr.value
    if meth == "add_argument":
        names = [_lit_of(a.value) for a in node.args if a.keyword is None]
        names = [n for n in names if isinstance(n, str)]
        kw = {a.keyword.value: a.value for a in node.args if a.keyword is not None}
        dest = _lit_of(kw["dest"]) if "dest" in kw else None
        if not isinstance(dest, str):
            longs = [n for n in names if n.startswith("--")]
            pick = longs[0] if longs else (names[0] if names else None)
            dest = pick.lstrip("-").replace("-", "_") if pick else None
        if not dest:
            return []
        if "default" in kw:
            v = _lit_of(kw["default"])
        else:
            act = _lit_of(kw["action"]) if "action" in kw else None
            v = False if act == "store_true" else (True if act == "store_false" else None)
        if v is _NO:
            return []
        return [ConfigDefault(dest, v, ctx.path, line, "argparse")]
    if meth == "get" and len(node.args) == 2:
        base = dotted(fn.value) or ""
        if not base or not any(vocab.is_config_root(p) for p in base.split(".")):
            return []
        key = _lit_of(node.args[0].value)
        v = _lit_of(node.args[1].value)
        if isinstance(key, str) and v is not _NO:
            return [ConfigDefault(key, v, ctx.path, line, "get")]
    return []
