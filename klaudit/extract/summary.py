"""What the per-file pass keeps of a module: small picklable summaries, no CST nodes.

A ``FunctionSummary`` holds the function's return value as an IR expression of its parameters and
the *events* of its body: values assigned to names, stored into containers or attributes, returned,
back-propagated, logged, compared.  The linker resolves calls across functions and files on these
summaries alone; classification reads the events to find KL terms and where their values go.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ..ir import Cond, Expr, Loc

# Event kinds
ASSIGN = "assign"  # name = value (also augmented: ``aug`` holds the increment)
STORE = "store"  # container[key] = value, obj.attr = value
RETURN = "return"
BACKWARD = "backward"  # value.backward(), accelerator.backward(value), ...
METRIC = "metric"  # value.item(), float(value), metrics[...] = value, log(value), ...
MASK = "mask"  # value compared with a threshold (a filter or mask)
CONTROLLER = "controller"  # kl_ctl.update(value, ...)
CALLARG = "callarg"  # value passed to an unresolved call (the linker may look inside)


@dataclass(frozen=True)
class Event:
    kind: str
    target: str  # assigned name, "obj[key]", "self.attr", callee name, ...
    value: Expr
    loc: Loc  # the expression's location
    stmt: Tuple[int, int]  # first and last line of the enclosing statement
    aug: Optional[str] = None  # for augmented assignment: the operator ("+", "-", ...)
    conds: Tuple[Cond, ...] = ()  # path condition (option tests) under which it happens
    no_grad: bool = False


@dataclass(frozen=True)
class FunctionSummary:
    qualname: str  # module.Class.func (nested functions: module.outer.<locals>.inner)
    name: str
    path: str
    loc: Loc
    params: Tuple[str, ...]
    defaults: Tuple[Tuple[str, Expr], ...]
    returns: Optional[Expr]
    events: Tuple[Event, ...]
    class_name: Optional[str] = None
    no_grad: bool = False  # decorated with torch.no_grad / inference_mode
    decorators: Tuple[str, ...] = ()
    is_method: bool = False
    static: bool = False
    end_line: int = 0


@dataclass(frozen=True)
class ClassSummary:
    qualname: str
    name: str
    bases: Tuple[str, ...]  # qualified where resolvable
    methods: Tuple[str, ...]
    fields: Tuple[Tuple[str, Expr, Loc], ...]  # dataclass-style annotated defaults
    is_dataclass: bool
    loc: Loc


@dataclass(frozen=True)
class ConfigDefault:
    """A default value for a config key, from a dataclass field, argparse, ``.get(key, default)`` or YAML."""

    key: str  # dotted path as written (``algorithm.kl_penalty``) or a bare field name
    value: object
    path: str
    line: int
    source: str  # "dataclass" | "argparse" | "get" | "yaml" | "param"
    owner: str = ""  # the class holding a dataclass field


@dataclass
class ModuleSummary:
    path: str
    module: str  # dotted module name
    functions: Dict[str, FunctionSummary] = field(default_factory=dict)
    classes: Dict[str, ClassSummary] = field(default_factory=dict)
    imports: Dict[str, str] = field(default_factory=dict)  # local alias -> qualified name
    exports: Dict[str, Expr] = field(default_factory=dict)  # module-level names -> values (registries, constants)
    config_defaults: List[ConfigDefault] = field(default_factory=list)
    suppressions: Dict[int, Optional[Tuple[str, ...]]] = field(default_factory=dict)  # line -> codes (None: all)
    own_line_suppressions: Dict[int, Optional[Tuple[str, ...]]] = field(default_factory=dict)
    statement_starts: Dict[int, int] = field(default_factory=dict)  # any line -> first line of its statement
    lines: int = 0
