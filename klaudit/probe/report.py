"""What the probe found, as small frozen dataclasses of plain numbers (no tensors are kept).

``CoefficientReport`` (from ``measure`` and ``wrap``) and ``AuditReport`` (from ``audit``) each have
``to_dict()`` (JSON-ready), a one-paragraph ``str()``, and ``CoefficientReport.plot(path)``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional, Tuple

from ..derive import families as F

PLACEMENT_WORDS = {"as_loss": "as loss", "in_reward": "in the reward"}


def _num(x: Optional[float]) -> str:
    if x is None:
        return "n/a"
    if x == 0 or (1e-3 <= abs(x) < 1e4):
        return f"{x:.4g}"
    return f"{x:.3g}"


def _interval(lo: float, hi: float) -> str:
    if math.isinf(lo) and math.isinf(hi):
        return "everywhere"
    if math.isinf(lo):
        return f"ell < {hi:.3f} (delta > {math.exp(-hi):.4g})"
    if math.isinf(hi):
        return f"ell > {lo:.3f} (delta < {math.exp(-lo):.4g})"
    return f"{lo:.3f} < ell < {hi:.3f}"


@dataclass(frozen=True)
class CoefficientReport:
    """The measured per-token gradient coefficient c(delta) of one KL implementation.

    ``scale`` and ``offset``: c = scale * template(ell) + offset, per unit of aggregation weight (a
    token-mean loss with beta = 0.04 shows scale 0.04); ``residual``: relative residual of that fit;
    ``max_rel_deviation``: the largest |c - c_lin| / |c_lin - c_lin(0)| over the probed points with
    |ell| >= 0.1, where c_lin is the principled coefficient (affine in -log(delta)) that agrees with
    c to first order at delta = 1; None when c has no positive first-order term there.

    Also: ``template`` (the COEFFICIENTS name, "zero" or None), ``placement`` (as_loss | in_reward),
    ``aggregation``, ``clamped`` (ell intervals with zero gradient), ``deviating`` (probe points off the
    family outside the fitting range), ``alternatives`` (every template with its residual),
    ``masked`` (probe tokens of zero weight), ``ell_only`` (c depends on log(pi/pi_ref) alone),
    ``per_token`` (a token's c depends on its own log-ratio only), ``tracks`` and ``is_weight``
    (with ``old=``: whether c follows logp - ref or old - ref, and the importance weight measured
    with old = logp - 0.3), ``second_derivative`` (d2L/dlogp2 near delta = 1, per unit weight),
    ``reward_detached``, ``notes``, the probed ``ells`` and the ``measured`` coefficients; for
    ``wrap`` reports, ``observed`` (range of ell in the batch) and ``step``.
    """

    family: Optional[str]
    coefficient: str
    principled: bool
    scale: Optional[float]
    residual: float
    max_rel_deviation: Optional[float]
    template: Optional[str] = None
    offset: float = 0.0
    placement: str = "unknown"
    estimator: str = "unknown"
    minimizes: str = ""
    mode: str = "token"
    aggregation: str = "unknown"
    clamped: Tuple[Tuple[float, float], ...] = ()
    deviating: Tuple[float, ...] = ()
    alternatives: Tuple[Tuple[str, float, float, float], ...] = ()
    masked: int = 0
    ell_only: Optional[bool] = None
    per_token: Optional[bool] = None
    tracks: Optional[str] = None
    is_weight: Optional[float] = None
    second_derivative: Optional[float] = None
    reward_detached: Optional[bool] = None
    notes: Tuple[str, ...] = ()
    ells: Tuple[float, ...] = ()
    measured: Tuple[Optional[float], ...] = ()
    observed: Optional[Tuple[float, float]] = None  # wrap: range of ell in the real batch
    step: Optional[int] = None  # wrap: which call was measured

    def to_dict(self) -> dict:
        d = asdict(self)
        d["clamped"] = [[_finite(a), _finite(b)] for a, b in self.clamped]
        d["alternatives"] = [{"template": t, "scale": a, "offset": b, "residual": r}
                             for t, a, b, r in self.alternatives]
        d["measured"] = [None if v is None or not math.isfinite(v) else v for v in self.measured]
        for k in ("ells", "deviating", "notes"):
            d[k] = list(d[k])
        if self.observed is not None:
            d["observed"] = list(self.observed)
        return d

    @property
    def words(self) -> str:
        """e.g. "k3 as loss"."""
        fam = F.BY_NAME.get(self.family or "")
        if fam is None:
            return self.family or "unmatched"
        if fam.estimator.startswith("full"):
            return "exact full-vocabulary " + ("reverse" if fam.estimator == "full" else "forward") + " KL as loss"
        est = {"k3_inverted": "inverted k3"}.get(fam.estimator, fam.estimator)
        return f"{est} {PLACEMENT_WORDS.get(fam.placement, fam.placement)}"

    def __str__(self) -> str:
        parts = []
        if self.template == "zero":
            parts.append("no gradient reaches the policy log-probs (the term is detached, built from old "
                         "log-probs only, or absent)")
        elif self.template is None:
            alts = "; ".join(f"{t} (relative residual {_num(r)})" for t, _, _, r in self.alternatives[:3])
            parts.append(f"matches no coefficient family (closest: {alts})" if alts else
                         "matches no coefficient family")
        else:
            agg = "" if self.aggregation in ("unknown", "") else f", {self.aggregation}"
            where = PLACEMENT_WORDS.get(self.placement, "in an unknown placement")
            head = f"behaves like {self.words}" if self.family else \
                f"coefficient template {self.template} {where} (no named family)"
            offset = f", offset {_num(self.offset)}" \
                if abs(self.offset) > 1e-9 * max(1.0, abs(self.scale or 0.0)) else ""
            if self.scale is None:
                parts.append(f"{head}: coefficient {self.coefficient}")
            else:
                parts.append(f"{head}: coefficient {self.coefficient} (scale {_num(self.scale)}{offset}{agg})")
        verdict = "yes" if self.principled else "no"
        if self.minimizes and self.template not in (None, "zero"):
            verdict += f" (in expectation it targets {self.minimizes})"
        if self.scale is not None and self.scale < 0 and self.template not in (None, "zero"):
            verdict += " (sign reversed: it ascends the KL)"
        parts.append(f"principled: {verdict}")
        if self.max_rel_deviation is not None:
            where = "the deltas seen in this batch" if self.observed else "the probed range"
            parts.append(f"max deviation from -log(delta) over {where}: {_num(self.max_rel_deviation)}x")
        elif self.template not in (None, "zero", "const") and not (self.scale is not None and self.scale < 0):
            parts.append("no first-order pull toward pi_ref at delta = 1")
        text = "; ".join(parts) + "."
        if self.clamped:
            text += " Zero gradient (clamped) for " + ", ".join(_interval(a, b) for a, b in self.clamped) + "."
        if self.deviating:
            text += " Off the matched family at ell = " + ", ".join(f"{e:g}" for e in self.deviating[:6]) + "."
        for n in self.notes:
            text += " " + n[0].upper() + n[1:] + ("" if n.endswith(".") else ".")
        return text

    def plot(self, path: str) -> str:
        """Measured points over delta, with -log(delta) and the matched curve; needs matplotlib."""
        from .plot import plot_coefficient

        return plot_coefficient(self, path)


def _finite(x: float):
    return x if math.isfinite(x) else (None if math.isnan(x) else ("-inf" if x < 0 else "inf"))


@dataclass(frozen=True)
class AuditReport:
    """Exact expectation of the gradient of ``fn`` over a small softmax policy.

    ``cosine`` and ``relative_bias`` (|E - g*| / |g*|, no rescaling) compare the expected gradient E
    with the reverse-KL gradient g* = pi * (ell - KL); ``scale`` is the best positive multiple s in
    E ~ s g* (0 when none is positive); ``variance`` is the per-sample trace covariance
    sum_x p(x) |G(x)|^2 - |E|^2; ``target`` names what E is exactly proportional to, if anything.
    """

    cosine: Optional[float]
    relative_bias: float
    scale: float
    variance: float
    target: str
    kind: str
    vocab: int
    on_policy: bool
    kl: float
    expected: Tuple[float, ...]
    true: Tuple[float, ...]
    pi: Tuple[float, ...]
    reference: Tuple[float, ...]
    sampling: Tuple[float, ...]

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("expected", "true", "pi", "reference", "sampling"):
            d[k] = list(d[k])
        return d

    def __str__(self) -> str:
        where = "on-policy" if self.on_policy else "off-policy (samples from the behaviour policy)"
        cos = "undefined" if self.cosine is None else f"{self.cosine:.6f}"
        text = (f"expected gradient of the {self.kind} over V={self.vocab} tokens, {where}, against the reverse-KL "
                f"gradient (KL = {self.kl:.6f}): cosine {cos}, relative bias {self.relative_bias:.6f}, best positive "
                f"multiple {self.scale:.6g}, per-sample gradient variance {self.variance:.6f}")
        if self.target != "none":
            text += f"; the expected gradient is exactly {self.target}"
        return text + "."
