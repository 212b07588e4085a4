"""Where the probe looks: the log-ratios it tries, and the log-prob tensors that realise them.

``ell = logp - ref_logp = -log(delta)``.  The fitting grid spans delta from e^-5 to e^5 in steps of
0.25 in ell, plus points close to delta = 1; the extremes (up to |ell| = 21) are only used to find
clamps (a zero coefficient where the matched family is not zero) and to check that the family holds
outside the fitting range.

Token mode: every token is one probe point; ``ref`` and ``logp`` are both valid log-probabilities
(at most -1), so code that exponentiates them, or builds logits from them, stays meaningful.
Vocabulary mode: one decoding state whose vocabulary entries are the probe points; ``pi`` and
``pi_ref`` are proper distributions with log pi(v) - log pi_ref(v) equal to the grid value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Sequence, Tuple

CORE: Tuple[float, ...] = tuple(x / 4.0 for x in range(-20, 21))  # -5 .. 5 step 0.25
NEAR_ONE: Tuple[float, ...] = (-0.02, -0.005, 0.005, 0.02)
EXTREMES: Tuple[float, ...] = (-21.0, -11.5, -8.0, 8.0, 11.5, 21.0)
FIT_LIMIT = 5.0  # points with |ell| <= FIT_LIMIT are used for fitting
UNIT_ELL = 1.0  # the log-ratio used to measure each token's aggregation weight


def default_ells() -> List[float]:
    """The default probe points, sorted (symmetric around 0)."""
    return sorted(set(CORE) | set(NEAR_ONE) | set(EXTREMES))


def is_fit_point(ell: float) -> bool:
    return abs(ell) <= FIT_LIMIT + 1e-12


@dataclass(frozen=True)
class TokenValues:
    """Plain numbers for one token-mode call: per token ``logp`` and ``ref`` with logp - ref = ell."""

    ells: Tuple[float, ...]
    logp: Tuple[float, ...]
    ref: Tuple[float, ...]


def token_values(ells: Sequence[float], shift: float = 0.0) -> TokenValues:
    """Log-probs realising ``ells``: the larger of the two is ``-1 + shift`` (shift <= 0 keeps them
    log-probabilities); ``shift`` moves both together, so ell is unchanged."""
    logp, ref = [], []
    for e in ells:
        r = -1.0 - max(e, 0.0) + shift
        ref.append(r)
        logp.append(r + e)
    return TokenValues(tuple(float(e) for e in ells), tuple(logp), tuple(ref))


def vocabulary_logits(ells: Sequence[float]) -> Tuple[List[float], List[float]]:
    """Logits (log-probabilities) of pi and pi_ref over len(ells) entries with
    log pi(v) - log pi_ref(v) = ells[v] exactly when ``ells`` is symmetric around 0 (otherwise up to
    one constant, which the caller reads back from the normalised tensors)."""
    a = [min(e, 0.0) for e in ells]  # pi(v) proportional to exp(min(ell, 0))
    b = [min(-e, 0.0) for e in ells]  # pi_ref(v) proportional to exp(-max(ell, 0))
    za = _logsumexp(a)
    zb = _logsumexp(b)
    return [x - za for x in a], [x - zb for x in b]


def _logsumexp(xs: Sequence[float]) -> float:
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))
