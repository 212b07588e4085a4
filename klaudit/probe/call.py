"""One call of the user's function: check its parameters, run it, and say what it returned.

What a function returns decides how the probe reads it:

* a scalar tensor (or the first scalar tensor of a tuple/list/dict): a **loss**; the coefficient is
  dL/dlogp;
* a tensor shaped like the tokens (or a tuple whose first tensor is; or one value per sequence, which
  every token of the sequence receives): **rewards**; the probe forms the
  policy-gradient surrogate ``-sum_t sg(r_t) * exp(logp_t - sg(old_t))`` (= ``-sum_t sg(r_t) logp_t``
  on-policy), whose coefficient is ``-r_t``: a reward ``r -= beta * k`` shows ``c = beta * k``;
* nothing, after calling ``loss.backward()`` itself: the probe intercepts ``Tensor.backward`` and
  ``torch.autograd.backward`` during the call (they record the tensor instead of running), and reads
  that tensor as the loss.

``kind="loss"`` or ``kind="reward"`` overrides the guess (a per-token loss returned unreduced is
summed under ``kind="loss"``; with the probe's single sequence, a per-sequence reward has one element
and needs ``kind="reward"``).
"""
from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch

from .errors import ProbeError

KINDS = ("auto", "loss", "reward")


@dataclass
class Output:
    kind: str  # "loss" | "reward"
    loss: Optional[torch.Tensor] = None  # a scalar
    reward: Optional[torch.Tensor] = None  # shaped like the tokens
    via_backward: bool = False  # the loss was the tensor passed to backward()


def parameters(fn: Callable) -> Tuple[List[str], List[str], bool]:
    """(all parameter names, names without a default, accepts **kwargs) of ``fn``."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as e:
        raise ProbeError(f"cannot read the signature of {fn!r}: {e}") from e
    names, required, var_kw = [], [], False
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
            continue
        if p.kind is p.VAR_POSITIONAL:
            continue
        names.append(p.name)
        if p.default is p.empty:
            required.append(p.name)
    return names, required, var_kw


def check_binding(fn: Callable, provided: Iterable[str]) -> None:
    """Every provided name is a parameter, and every parameter without a default is provided."""
    names, required, var_kw = parameters(fn)
    provided = list(provided)
    unknown = [n for n in provided if n not in names and not var_kw]
    if unknown:
        raise ProbeError(f"{_name(fn)} has no parameter {', '.join(map(repr, unknown))}; "
                         f"its parameters are {', '.join(names) or '(none)'}")
    missing = [n for n in required if n not in provided]
    if missing:
        raise ProbeError(
            f"{_name(fn)}: bind {', '.join(missing)} (e.g. measure(fn, ..., mask=ones, advantages=zeros); "
            "`from klaudit.probe import ones, zeros`)")


def _name(fn) -> str:
    return getattr(fn, "__qualname__", None) or getattr(getattr(fn, "func", None), "__qualname__", None) or repr(fn)


@contextlib.contextmanager
def capture_backward():
    """While active, ``backward()`` records its tensor instead of running (restored afterwards)."""
    seen: List[torch.Tensor] = []
    tensor_backward = torch.Tensor.backward
    autograd_backward = torch.autograd.backward

    def record_tensor(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        seen.append(self)

    def record_autograd(tensors, grad_tensors=None, retain_graph=None, create_graph=False, *args, **kwargs):
        seen.extend([tensors] if isinstance(tensors, torch.Tensor) else list(tensors))

    torch.Tensor.backward = record_tensor
    torch.autograd.backward = record_autograd
    try:
        yield seen
    finally:
        torch.Tensor.backward = tensor_backward
        torch.autograd.backward = autograd_backward


def invoke(fn: Callable, kwargs: Dict[str, object], kind: str, tokens: Tuple[int, ...]) -> Output:
    """Call ``fn(**kwargs)`` with grad enabled and backward captured; interpret its output."""
    with torch.enable_grad(), capture_backward() as seen:
        out = fn(**kwargs)
    return interpret(out, kind, tokens, seen)


def _tensors(out) -> List[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        keys = (["loss"] if "loss" in out else []) + [k for k in out if k != "loss"]
        return [out[k] for k in keys if isinstance(out[k], torch.Tensor)]
    if isinstance(out, (tuple, list)):
        return [x for x in out if isinstance(x, torch.Tensor)]
    return []


def interpret(out, kind: str, tokens: Tuple[int, ...], captured: List[torch.Tensor]) -> Output:
    if kind not in KINDS:
        raise ProbeError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    ts = _tensors(out)
    if not ts:
        if captured and kind != "reward":
            loss = captured[0] if len(captured) == 1 else sum(t.sum() for t in captured)
            return Output("loss", loss=loss.sum(), via_backward=True)
        if out is None:
            raise ProbeError("the function returned nothing and called no backward(): nothing to measure")
        raise ProbeError(f"the function returned {type(out).__name__}, not a tensor: nothing to measure")
    scalars = [t for t in ts if t.numel() == 1]
    if kind == "loss" or (kind == "auto" and ts[0].numel() == 1):
        loss = next((t for t in scalars if t.requires_grad), scalars[0] if scalars else ts[0])
        return Output("loss", loss=loss.sum())
    reward = ts[0] if kind == "auto" else next((t for t in ts if t.numel() > 1), ts[0])
    if reward.dim() == 1 and len(tokens) == 2 and reward.shape[0] == tokens[0] and tokens[0] != tokens[1]:
        reward = reward.unsqueeze(-1)  # one reward per sequence, credited to every token
    try:
        reward = torch.broadcast_to(reward, tokens)
    except RuntimeError as e:
        raise ProbeError(f"the function returned a tensor of shape {tuple(reward.shape)}, which is neither a "
                         f"scalar loss nor per-token rewards of shape {tuple(tokens)}") from e
    return Output("reward", reward=reward)
