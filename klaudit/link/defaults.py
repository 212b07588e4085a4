"""Resolve an option's shipped default: a parameter default, or a config key's default."""
from __future__ import annotations

from typing import Optional, Tuple

from .. import model as M
from ..extract.summary import FunctionSummary
from ..ir import Const, Lit, OptionKey
from .configindex import ConfigIndex


class ProjectDefaults:
    def __init__(self, index: ConfigIndex, call_args=None):
        self.index = index
        self.call_args = call_args or {}

    def default(self, key: OptionKey, fs: FunctionSummary) -> Optional[Tuple[object, M.DefaultSource]]:
        if key.kind == "param":
            passed = self.call_args.get((fs.qualname, key.name))
            if passed:
                got = []
                for p in passed:
                    if isinstance(p, tuple) and p and p[0] == "literal":
                        got.append((p[1], None))
                    elif isinstance(p, OptionKey) and p.kind == "config":
                        r = self.default(p, fs)
                        if r is None:
                            got = []
                            break
                        got.append(r)
                    else:
                        got = []
                        break
                vals = {repr(v) for v, _ in got}
                if got and len(vals) == 1:
                    v, src = got[0]
                    if src is None:
                        src = M.DefaultSource(key.label(), repr(v), fs.path, fs.loc.line, "literal passed by every caller")
                    return v, src
        if key.kind == "param" and key.default is not None:
            d = key.default
            if isinstance(d, (Lit, Const)):
                v = d.value
                if isinstance(d, Const) and float(v).is_integer():
                    v = int(v)
                return v, M.DefaultSource(key.label(), repr(v), fs.path, fs.loc.line, "parameter default")
        if key.kind == "config" and key.name:
            c = self.index.lookup(key.name, fs.path)
            if c is not None:
                v = c.value
                if isinstance(v, float) and v.is_integer() and False:
                    v = int(v)
                src = {"yaml": "YAML", "dataclass": f"dataclass field{' of ' + c.owner if c.owner else ''}",
                       "argparse": "argparse default", "get": ".get() default", "getattr": "getattr() default"}
                return v, M.DefaultSource(key.name, repr(v), c.path, c.line, src.get(c.source, c.source))
        return None
