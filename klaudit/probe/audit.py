"""``audit``: the exact expected gradient of a KL implementation over a small softmax policy.

A policy pi = softmax(theta) over V tokens and a fixed reference pi_ref (random from ``seed``, or the
probability vectors given).  For every token x the user's ``fn(logp, ref_logp[, old_logp])`` is called
with ``logp = log_softmax(theta)[x]`` (a function of the logits), ``ref_logp = log pi_ref(x)`` and
``old_logp = log mu(x)`` (constant), and G(x) = dL(x)/dtheta by autograd.  The expectation
E = sum_x p(x) G(x) is exact (no sampling), with p = pi on-policy or p = mu = ``behaviour``
off-policy.  It is compared with the reverse-KL gradient g* = grad KL(pi || pi_ref) = pi * (ell - KL)
(THEORY.md section 0), and named when it is exactly a positive multiple of g*, of the forward-KL
gradient pi - pi_ref, of the gradient of sum|pi - pi_ref| = 2 TV, or zero.

``fn`` returning a tensor that requires grad is a loss; one that does not is a reward, for which the
surrogate ``-sg(r) * exp(logp - sg(old_logp))`` is differentiated (``kind`` forces either).
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch

from .call import capture_backward, parameters
from .errors import ProbeError
from .report import AuditReport


def _probs(x, v: int, dtype) -> torch.Tensor:
    p = torch.as_tensor(x, dtype=dtype).flatten()
    if p.numel() != v:
        raise ProbeError(f"a probability vector of length {v} was expected, got {p.numel()}")
    if bool((p <= 0).any()) or abs(float(p.sum()) - 1.0) > 1e-6:
        raise ProbeError("probability vectors must be positive and sum to 1")
    return p / p.sum()


def _arity(fn: Callable) -> int:
    names, required, _ = parameters(fn)
    if len(names) < 2:
        raise ProbeError("audit: fn must take (logp, ref_logp) or (logp, ref_logp, old_logp)")
    return 3 if len(names) >= 3 and (len(required) >= 3 or "old" in names[2]) else 2


def _gradient(fn, arity, theta, x, log_q, log_mu, kind):
    """(dL(x)/dtheta, read as a reward)."""
    th = theta.clone().requires_grad_(True)
    logp = torch.log_softmax(th, -1)[x]
    args = [logp, log_q[x]] + ([log_mu[x]] if arity == 3 else [])
    with torch.enable_grad(), capture_backward() as seen:
        out = fn(*args)
    if out is None and seen:
        out = seen[0]
    if not isinstance(out, torch.Tensor):
        raise ProbeError(f"audit: fn returned {type(out).__name__}, expected a scalar tensor")
    if out.numel() != 1:
        raise ProbeError(f"audit: fn is called on one token and must return a scalar, got shape {tuple(out.shape)}")
    as_reward = kind == "reward" or (kind == "auto" and not out.requires_grad)
    if as_reward:
        out = -(out.detach().to(th.dtype) * torch.exp(logp - log_mu[x])).sum()
    if not out.requires_grad:
        return torch.zeros_like(theta), as_reward
    (g,) = torch.autograd.grad(out.sum(), th, allow_unused=True)
    return (torch.zeros_like(theta) if g is None else g.detach()), as_reward


def _proportional(e: torch.Tensor, c: torch.Tensor, tol: float) -> Optional[float]:
    """s > 0 with e == s * c (relative tolerance), else None."""
    cc = float(c @ c)
    if cc == 0.0:
        return None
    s = float(e @ c) / cc
    if s <= 0:
        return None
    if float((e - s * c).norm()) <= tol * max(float(e.norm()), 1e-300):
        return s
    return None


def audit(fn: Callable, vocab: int = 4, seed: int = 0, policy: Optional[Sequence[float]] = None,
          reference: Optional[Sequence[float]] = None, behaviour: Optional[Sequence[float]] = None,
          kind: str = "auto", dtype: torch.dtype = torch.float64) -> AuditReport:
    """Exact expected gradient of ``fn`` over a V-token softmax policy, against grad KL(pi || pi_ref).

    ``policy``, ``reference``, ``behaviour``: probability vectors (default: random from ``seed`` for
    the first two; on-policy sampling when ``behaviour`` is None).  See the module docstring."""
    if kind not in ("auto", "loss", "reward"):
        raise ProbeError(f"kind must be auto, loss or reward, not {kind!r}")
    if policy is not None:
        vocab = len(policy)
    if vocab < 2:
        raise ProbeError("audit: vocab must be at least 2")
    gen = torch.Generator().manual_seed(seed)
    theta_rand = torch.randn(vocab, generator=gen, dtype=dtype)
    ref_rand = torch.randn(vocab, generator=gen, dtype=dtype)
    theta = torch.log(_probs(policy, vocab, dtype)) if policy is not None else theta_rand
    pi = torch.softmax(theta, -1)
    q = _probs(reference, vocab, dtype) if reference is not None else torch.softmax(ref_rand, -1)
    mu = _probs(behaviour, vocab, dtype) if behaviour is not None else pi
    log_q, log_mu = q.log(), mu.log()
    ell = pi.log() - log_q
    kl = float((pi * ell).sum())
    true = pi * (ell - kl)
    arity = _arity(fn)
    runs = [_gradient(fn, arity, theta, x, log_q, log_mu, kind) for x in range(vocab)]
    G = torch.stack([g for g, _ in runs])
    as_reward = runs[0][1]
    expected = (mu.unsqueeze(1) * G).sum(0)
    variance = float((mu * (G * G).sum(1)).sum() - expected @ expected)
    tn, en = float(true.norm()), float(expected.norm())
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    vanishes = en <= tol * max(float(G.norm()), 1e-300)  # zero up to rounding: no direction to compare
    cosine = float(expected @ true) / (en * tn) if en > 0 and tn > 0 and not vanishes else None
    rel_bias = float((expected - true).norm()) / tn if tn > 0 else math.inf
    scale = max(0.0, float(expected @ true) / float(true @ true)) if tn > 0 and not vanishes else 0.0
    sign_ = torch.sign(pi - q)
    targets = (
        ("the reverse-KL gradient grad KL(pi || pi_ref)", true),
        ("the forward-KL gradient grad KL(pi_ref || pi) = pi - pi_ref", pi - q),
        ("the gradient of sum|pi - pi_ref| = 2 TV(pi, pi_ref)", pi * (sign_ - (pi * sign_).sum())),
    )
    target = "none"
    if vanishes:
        target = "zero (no expected gradient)"
    else:
        for name, c in targets:
            s = _proportional(expected, c, tol)
            if s is not None:
                target = name if abs(s - 1.0) <= tol else f"{s:.6g} x {name}"
                break
    return AuditReport(
        cosine=cosine, relative_bias=rel_bias, scale=scale, variance=variance, target=target,
        kind="reward" if as_reward else "loss",
        vocab=vocab, on_policy=behaviour is None, kl=kl, expected=tuple(expected.tolist()),
        true=tuple(true.tolist()), pi=tuple(pi.tolist()), reference=tuple(q.tolist()), sampling=tuple(mu.tolist()),
    )
