"""Bind a function's other parameters by their names, for the command line (and fixture tests).

A rule table, checked in order on the lower-cased parameter name; the first match wins.  A parameter
with a default keeps it.  What a name cannot tell is an error that lists the parameters left unbound
(bind them with ``--bind NAME=VALUE`` or with ``measure(..., NAME=value)``).
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Callable, Dict, Iterable, List, Tuple

from .call import parameters
from .errors import ProbeError
from .sources import Fill, full, ones, per_sequence, zeros

# (substrings of the name, value, why) -- the value is shaped by the probe when it is a Fill
RULES: List[Tuple[Tuple[str, ...], object, str]] = [
    (("mask",), ones, "a mask: every token counts"),
    (("input_ids", "token_ids", "labels", "actions", "response_ids"), full(0, "long"), "token ids"),
    (("token_level_score", "token_level_reward", "token_scores", "token_rewards"), zeros,
     "per-token task rewards: 0, so only the KL term is measured"),
    (("score",), per_sequence(0.0), "sequence scores: 0, so only the KL term is measured"),
    (("reward",), zeros, "task rewards: 0, so only the KL term is measured"),
    (("advantage", "returns"), zeros, "advantages: 0, so the policy-gradient term adds nothing"),
    (("loss",), 0.0, "another loss term: 0"),
    (("ctl", "ctrl", "controller"), SimpleNamespace(value=1.0), "a KL controller: .value = 1"),
    (("beta", "coef", "coeff", "weight", "scale", "lambda", "alpha", "temperature", "gamma"), 1.0,
     "a coefficient: 1"),
]


def describe(value) -> str:
    if isinstance(value, Fill):
        return repr(value)
    if isinstance(value, SimpleNamespace):
        return "an object with value=1.0"
    return repr(value)


def autobind(fn: Callable, exclude: Iterable[str] = (), overrides: Dict[str, object] = None
             ) -> Dict[str, Tuple[object, str]]:
    """``{name: (value, why)}`` for every parameter of ``fn`` not in ``exclude``: ``overrides`` first,
    then the default, then the rule table.  Raises :class:`ProbeError` naming what it cannot bind."""
    overrides = dict(overrides or {})
    names, required, _ = parameters(fn)
    out: Dict[str, Tuple[object, str]] = {}
    unbound = []
    for name in names:
        if name in exclude:
            continue
        if name in overrides:
            out[name] = (overrides.pop(name), "given")
            continue
        if name not in required:
            continue  # keeps its default
        low = name.lower()
        for keys, value, why in RULES:
            if any(k in low for k in keys):
                out[name] = (value, why)
                break
        else:
            unbound.append(name)
    if overrides:
        raise ProbeError(f"no parameter {', '.join(sorted(overrides))} to bind")
    if unbound:
        raise ProbeError(f"cannot guess a value for {', '.join(unbound)}: bind "
                         f"{'it' if len(unbound) == 1 else 'them'} explicitly (--bind NAME=VALUE)")
    return out


def parse_value(text: str):
    """A ``--bind`` value: ones, zeros, none, true, false, or a number."""
    low = text.strip().lower()
    named = {"ones": ones, "zeros": zeros, "none": None, "true": True, "false": False}
    if low in named:
        return named[low]
    try:
        return int(text) if low.lstrip("+-").isdigit() else float(text)
    except ValueError:
        raise ProbeError(f"cannot read {text!r}: use ones, zeros, none, true, false or a number") from None
