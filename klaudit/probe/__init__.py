"""The runtime probe: measure the gradient coefficient a real KL implementation produces.

The static analyzer says what a KL term *should* do to the gradient; the probe runs the user's own
function under autograd and measures what it *does*:

* ``measure(fn, policy=, reference=, **fixed)``: the per-token coefficient c(delta) = dL/dlogp over a
  wide grid of delta = pi_ref/pi, matched against the coefficient families of
  :mod:`klaudit.derive.families` (shared with the static analyzer);
* ``audit(fn, vocab=, seed=)``: the exact expected gradient over a small softmax policy (no sampling),
  compared with the reverse-KL gradient;
* ``wrap(fn, policy=, reference=, every=)``: the same function, measured now and then during training;
* ``assert_principled(fn, policy=, reference=)``: for users' own test suites.

torch is an optional dependency (``pip install 'klaudit[probe]'``).  Importing this package does not
import torch; the names above load their modules (and torch) on first use.
"""
from __future__ import annotations

import importlib
from typing import Tuple

# public name -> (module, attribute)
_EXPORTS = {
    "measure": ("measure", "measure"),
    "audit": ("audit", "audit"),
    "wrap": ("wrap", "wrap"),
    "assert_principled": ("assertions", "assert_principled"),
    "NotPrincipledError": ("assertions", "NotPrincipledError"),
    "ProbedFunction": ("wrap", "ProbedFunction"),
    "CoefficientReport": ("report", "CoefficientReport"),
    "AuditReport": ("report", "AuditReport"),
    "ProbeError": ("errors", "ProbeError"),
    "ones": ("sources", "ones"),
    "zeros": ("sources", "zeros"),
    "full": ("sources", "full"),
    "per_sequence": ("sources", "per_sequence"),
    "logits": ("sources", "logits"),
    "model": ("sources", "model"),
    "autobind": ("autobind", "autobind"),
}
__all__ = sorted(_EXPORTS)
_TORCH_FREE = ("errors",)


def _load(module: str):
    try:
        return importlib.import_module(f"{__name__}.{module}")
    except ModuleNotFoundError as e:
        if e.name == "torch" or (e.name or "").startswith("torch."):
            raise ImportError("klaudit.probe needs torch: pip install 'klaudit[probe]'") from e
        raise


def __getattr__(name: str):
    spec: Tuple[str, str] = _EXPORTS.get(name)  # type: ignore[assignment]
    if spec is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_load(spec[0]), spec[1])
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
