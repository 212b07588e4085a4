"""What the probe hands the user's function: log-prob tensors, logits, tiny models, and filled tensors.

A *source* says how the probe's log-probs reach a parameter:

* ``"logp"`` (a plain name): the parameter receives the per-token log-prob tensor, shape (B, T);
* ``logits("logits", actions="actions")``: it receives logits (B, T, V) whose log-softmax, gathered at
  the ``actions`` the probe binds, equals the probe's log-probs (token mode); without ``actions`` the
  logits themselves are probed over the vocabulary (vocabulary mode, for exact full-vocabulary KL);
* ``model("policy_model")``: it receives a tiny deterministic ``torch.nn.Module`` whose output
  ``.logits`` are those logits (whatever inputs it is given).

A *fill* (``ones``, ``zeros``, ``full(v)``, ``per_sequence(v)``) is a tensor the probe shapes like its
own tokens when it calls the function (masks, advantages), so a binding survives the probe's changes
of shape.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch

from .errors import ProbeError

# ------------------------------------------------------------------------------------------- fills


@dataclass(frozen=True)
class Shape:
    """The shape of one probe call: ``batch`` rows of ``length`` tokens (vocabulary mode: states)."""

    batch: int
    length: int
    dtype: torch.dtype
    device: torch.device

    @property
    def tokens(self) -> Tuple[int, int]:
        return (self.batch, self.length)


@dataclass(frozen=True)
class Fill:
    """A tensor filled with ``value``, shaped like the probe's tokens (or one value per sequence)."""

    value: float
    dtype: Optional[str] = None  # None: the probe's float dtype; "long"; "bool"
    per: str = "token"  # "token": (B, T); "sequence": (B,)

    def make(self, shape: Shape) -> torch.Tensor:
        size = shape.tokens if self.per == "token" else (shape.batch,)
        dtype = {None: shape.dtype, "long": torch.long, "bool": torch.bool}[self.dtype]
        return torch.full(size, self.value, dtype=dtype, device=shape.device)

    def __repr__(self) -> str:
        if self.per == "sequence":
            return f"per_sequence({self.value!r})"
        if self.dtype is None and self.value in (0.0, 1.0):
            return "ones" if self.value == 1.0 else "zeros"
        return f"full({self.value!r})" if self.dtype is None else f"full({self.value!r}, {self.dtype!r})"


ones = Fill(1.0)
zeros = Fill(0.0)


def full(value: float, dtype: Optional[str] = None) -> Fill:
    """A token-shaped tensor filled with ``value`` (``dtype`` "long" or "bool" for index/flag tensors)."""
    return Fill(float(value), dtype)


def per_sequence(value: float = 0.0) -> Fill:
    """One value per sequence, shape (B,): sequence-level scores."""
    return Fill(float(value), None, "sequence")


def resolve(value, shape: Shape):
    """A bound value as the function receives it in a call of this shape."""
    return value.make(shape) if isinstance(value, Fill) else value


# ----------------------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class LogProbs:
    """The parameter receives per-token log-probs, shape (B, T)."""

    name: str


@dataclass(frozen=True)
class Logits:
    """The parameter receives logits (B, T, V); see the module docstring."""

    name: str
    actions: Optional[str] = None
    vocab: int = 8
    actions_keepdim: bool = False  # actions shaped (B, T, 1) instead of (B, T)


@dataclass(frozen=True)
class Model:
    """The parameter receives a tiny module; ``returns`` "output" (an object with ``.logits``) or
    "logits" (the tensor itself)."""

    name: str
    actions: Optional[str] = None
    vocab: int = 8
    actions_keepdim: bool = False
    returns: str = "output"


Source = Union[LogProbs, Logits, Model]


def logits(name: str, actions: Optional[str] = None, vocab: int = 8, actions_keepdim: bool = False) -> Logits:
    """Probe a function that takes logits.  With ``actions`` the probe binds that parameter to the
    sampled token ids (shape (B, T), or (B, T, 1) with ``actions_keepdim``) and measures per token;
    without, it measures the exact coefficient over the vocabulary."""
    if vocab < 2:
        raise ProbeError("logits(): vocab must be at least 2")
    return Logits(name, actions, vocab, actions_keepdim)


def model(name: str, actions: Optional[str] = None, vocab: int = 8, actions_keepdim: bool = False,
          returns: str = "output") -> Model:
    """Probe a function that takes a model (``model(inputs).logits``); as :func:`logits` otherwise."""
    if returns not in ("output", "logits"):
        raise ProbeError("model(): returns must be 'output' or 'logits'")
    if vocab < 2:
        raise ProbeError("model(): vocab must be at least 2")
    return Model(name, actions, vocab, actions_keepdim, returns)


def as_source(x) -> Source:
    if isinstance(x, (LogProbs, Logits, Model)):
        return x
    if isinstance(x, str):
        return parse(x)
    raise ProbeError(f"a policy/reference/old source must be a parameter name or logits()/model(), got {x!r}")


def parse(spec: str) -> Source:
    """``"logp"``, ``"logits:NAME"`` or ``"model:NAME"`` (the command line's spelling)."""
    if ":" in spec:
        kind, name = spec.split(":", 1)
        if kind == "logits":
            return Logits(name)
        if kind == "model":
            return Model(name)
        raise ProbeError(f"unknown source kind {kind!r} in {spec!r} (use logits:NAME or model:NAME)")
    if not spec.isidentifier():
        raise ProbeError(f"{spec!r} is not a parameter name")
    return LogProbs(spec)


def vocabulary_mode(policy: Source) -> bool:
    """Exact full-vocabulary terms are probed over the vocabulary of one state."""
    return isinstance(policy, (Logits, Model)) and policy.actions is None


# ------------------------------------------------------------------------------- building values


class ProbeModelOutput:
    """What ``ProbeModel`` returns: ``.logits``, also reachable as ``out[0]`` or ``out["logits"]``."""

    def __init__(self, logits: torch.Tensor):
        self.logits = logits

    def __getitem__(self, key):
        if key in (0, "logits"):
            return self.logits
        raise KeyError(key)


class ProbeModel(torch.nn.Module):
    """A model with no parameters whose output logits are fixed tensors built from the probe's leaf."""

    def __init__(self, logits: torch.Tensor, returns: str = "output"):
        super().__init__()
        self._probe_logits = logits
        self._returns = returns

    def forward(self, *args, **kwargs):
        if self._returns == "logits":
            return self._probe_logits
        return ProbeModelOutput(self._probe_logits)


def action_ids(shape: Shape, vocab: int) -> torch.Tensor:
    """The sampled token id of every probe token (varied, deterministic)."""
    t = torch.arange(shape.length, device=shape.device)
    ids = (3 * t + 1) % vocab
    return ids.unsqueeze(0).expand(shape.batch, shape.length).contiguous()


def token_logits(logp: torch.Tensor, ids: torch.Tensor, vocab: int) -> torch.Tensor:
    """Logits (B, T, V) with log_softmax(...).gather(-1, ids) == logp, differentiable in ``logp``: every
    other logit is 0 and the sampled one is log((V-1) p / (1-p))."""
    if bool((logp >= 0).any()):
        raise ProbeError("log-probs must be negative to build logits from them")
    z = logp + math.log(vocab - 1) - torch.log(-torch.expm1(logp))
    base = torch.zeros(tuple(logp.shape) + (vocab,), dtype=logp.dtype, device=logp.device)
    return base.scatter(-1, ids.unsqueeze(-1), z.unsqueeze(-1))


def token_argument(source: Source, logp: torch.Tensor, shape: Shape):
    """The argument value for ``source`` in token mode, given per-token log-probs."""
    if isinstance(source, LogProbs):
        return logp
    if source.actions is None:
        raise ProbeError(f"{source.name!r}: per-token probing of logits needs actions=... (the sampled ids)")
    lg = token_logits(logp, action_ids(shape, source.vocab), source.vocab)
    if isinstance(source, Logits):
        return lg
    return ProbeModel(lg, source.returns)


def actions_argument(source: Source, shape: Shape) -> Optional[Tuple[str, torch.Tensor]]:
    """(parameter name, ids) for a source that needs the sampled token ids bound."""
    if isinstance(source, (Logits, Model)) and source.actions is not None:
        ids = action_ids(shape, source.vocab)
        return source.actions, (ids.unsqueeze(-1) if source.actions_keepdim else ids)
    return None


def vocabulary_argument(source: Source, logits_: torch.Tensor):
    """The argument value for ``source`` in vocabulary mode, given logits (B, T, V)."""
    if isinstance(source, Logits):
        return logits_
    if isinstance(source, Model):
        return ProbeModel(logits_, source.returns)
    raise ProbeError(f"{source.name!r}: in vocabulary mode every source must be logits() or model()")
