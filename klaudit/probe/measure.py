"""``measure``: the per-token gradient coefficient of a KL implementation, by running it.

The probe calls the user's function with the policy log-probs as a leaf tensor placed on a grid of
log-ratios ell = logp - ref_logp (``grid.py``), takes c_t = dL/dlogp_t per token, and matches c
against the coefficient templates shared with the static analyzer (``classify.py``).  Around that one
measurement it makes a few more calls, each answering one question:

* **weights**: every token at ell = 1: each token's aggregation weight (masked tokens have 0); the
  coefficients are divided by the relative weights before fitting;
* **aggregation**: the batch doubled, then the sequence doubled: whether the loss divides by B and by T,
  so that ``scale`` is per unit of aggregation weight (a token-mean loss with beta = 0.04 shows 0.04);
* **placement**: the second derivative d2L/dlogp2.  An as-loss term has curvature (k2 as loss: beta);
  a detached coefficient times logp (k1 in the reward, written as a surrogate loss) has none, and one
  times exp(logp - old) has curvature equal to its coefficient;
* **old log-probs** (when ``old=`` names them): once on-policy (old = logp, detached), once with
  old = logp - 0.3: whether c follows logp - ref or old - ref (a reward built from rollout log-probs),
  and whether it carries the importance weight pi/pi_old;
* **log-ratio only**: logp and ref both shifted: c must not change;
* **per token**: the grid reversed: each token's c must follow its own ell (not a sequence total);
* **clamps**: zero coefficients where the matched family is not zero; each boundary is located by
  bisection.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import torch

from ..derive import families as F
from . import classify as C
from . import grid as G
from . import sources as S
from .call import check_binding, invoke
from .errors import ProbeError
from .report import CoefficientReport

OFF_POLICY_SHIFT = 0.3
REF_SHIFT = -0.7
BISECTIONS = 24


@dataclass
class Run:
    """One call's per-point numbers (row 0, first copy of the grid)."""

    kind: str  # "loss" | "reward"
    coef: List[float]
    second: Optional[List[float]] = None
    ells: Optional[List[float]] = None  # actual log-ratios (vocabulary mode reads them back)
    reward_detached: Optional[bool] = None
    via_backward: bool = False


class Probe:
    """The user's function with its sources and bindings, callable on any grid of log-ratios."""

    def __init__(self, fn: Callable, policy, reference, old=None, kind: str = "auto",
                 dtype: torch.dtype = torch.float64, device=None, fixed: Optional[Dict[str, object]] = None):
        fn, from_partial = _unbind_fills(fn)
        fixed = {**from_partial, **dict(fixed or {})}
        self.fn = fn
        self.policy = S.as_source(policy)
        self.reference = S.as_source(reference)
        self.old = S.as_source(old) if old is not None else None
        self.kind = kind
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.fixed = dict(fixed or {})
        self.vocabulary = S.vocabulary_mode(self.policy)
        names = [self.policy.name, self.reference.name] + ([self.old.name] if self.old else [])
        if len(set(names)) != len(names):
            raise ProbeError(f"policy, reference and old must be different parameters, got {names}")
        for src in (self.policy, self.reference, self.old):
            if src is not None and not self.vocabulary:
                a = getattr(src, "actions", None)
                if a is not None and a not in names:
                    names.append(a)
        clash = [k for k in self.fixed if k in names]
        if clash:
            raise ProbeError(f"{', '.join(clash)}: set by the probe, do not bind them")
        check_binding(fn, names + list(self.fixed))

    # ------------------------------------------------------------------------------------ calls
    def call(self, ells: Sequence[float], batch: int = 1, repeat: int = 1, shift: float = 0.0,
             old_shift: float = 0.0, second: bool = False) -> Run:
        if self.vocabulary:
            return self._call_vocabulary(ells, batch, repeat)
        return self._call_tokens(ells, batch, repeat, shift, old_shift, second)

    def _tensor(self, values: Sequence[float], batch: int, repeat: int) -> torch.Tensor:
        row = torch.tensor(list(values) * repeat, dtype=self.dtype, device=self.device)
        return row.unsqueeze(0).expand(batch, row.numel()).clone()

    def _call_tokens(self, ells, batch, repeat, shift, old_shift, second) -> Run:
        vals = G.token_values(ells, shift)
        n = len(ells)
        shape = S.Shape(batch, n * repeat, self.dtype, self.device)
        leaf = self._tensor(vals.logp, batch, repeat).requires_grad_(True)
        ref = self._tensor(vals.ref, batch, repeat)
        kwargs: Dict[str, object] = {
            self.policy.name: S.token_argument(self.policy, leaf, shape),
            self.reference.name: S.token_argument(self.reference, ref, shape),
        }
        old = leaf.detach() - old_shift
        if self.old is not None:
            kwargs[self.old.name] = S.token_argument(self.old, old, shape)
        for src in (self.policy, self.reference, self.old):
            a = S.actions_argument(src, shape) if src is not None else None
            if a is not None:
                kwargs[a[0]] = a[1]
        for k, v in self.fixed.items():
            kwargs[k] = S.resolve(v, shape)
        out = invoke(self.fn, kwargs, self.kind, shape.tokens)
        if out.kind == "loss":
            g, h = _grads(out.loss, leaf, second)
            return Run("loss", _row(g, n), _row(h, n) if h is not None else None, list(ells),
                       via_backward=out.via_backward)
        r = out.reward
        surrogate = -(r.detach().to(self.dtype) * torch.exp(leaf - old)).sum()
        (g,) = torch.autograd.grad(surrogate, leaf)
        return Run("reward", _row(g, n), None, list(ells), reward_detached=not r.requires_grad)

    def _call_vocabulary(self, ells, batch, repeat) -> Run:
        lp, lq = G.vocabulary_logits(ells)
        v = len(ells)
        shape = S.Shape(batch, repeat, self.dtype, self.device)

        def grid(values):
            return torch.tensor(values, dtype=self.dtype, device=self.device).expand(batch, repeat, v).clone()

        leaf = grid(lp).requires_grad_(True)
        ref = grid(lq)
        kwargs: Dict[str, object] = {
            self.policy.name: S.vocabulary_argument(self.policy, leaf),
            self.reference.name: S.vocabulary_argument(self.reference, ref),
        }
        if self.old is not None:
            kwargs[self.old.name] = S.vocabulary_argument(self.old, leaf.detach())
        for k, val in self.fixed.items():
            kwargs[k] = S.resolve(val, shape)
        out = invoke(self.fn, kwargs, "loss" if self.kind == "auto" else self.kind, shape.tokens)
        if out.kind != "loss":
            raise ProbeError("vocabulary-mode probing needs a loss (rewards are per sampled token)")
        g, _ = _grads(out.loss, leaf, False)
        with torch.no_grad():
            logpi = torch.log_softmax(leaf[0, 0], -1)
            actual = (logpi - torch.log_softmax(ref[0, 0], -1)).tolist()
            coef = (g[0, 0] / logpi.exp()).tolist()
        return Run("loss", coef, None, actual, via_backward=out.via_backward)

    # ----------------------------------------------------------------------------------- report
    def report(self, ells: Optional[Sequence[float]] = None) -> CoefficientReport:
        ells = list(ells) if ells is not None else G.default_ells()
        if len(ells) < C.MIN_POINTS:
            raise ProbeError(f"probe at least {C.MIN_POINTS} log-ratios")
        notes: List[str] = []
        main = self.call(ells, second=not self.vocabulary)
        ells = main.ells or ells
        n = len(ells)
        raw = main.coef
        # --- per-token weights
        weights: List[Optional[float]] = [1.0] * n
        uniform = True
        big = 0.0
        if not self.vocabulary:
            unit = self.call([G.UNIT_ELL] * n).coef
            big = max((abs(x) for x in unit if math.isfinite(x)), default=0.0)
            if big > C.ZERO:
                active = [math.isfinite(x) and abs(x) > 1e-12 * big for x in unit]
                if sum(active) >= max(C.MIN_POINTS, n // 2):
                    mean = sum(x for x, a in zip(unit, active) if a) / sum(active)
                    weights = [x / mean if a else None for x, a in zip(unit, active)]
                    uniform = all(w is not None and abs(w - 1.0) < 1e-9 for w in weights)
                else:
                    notes.append("the per-token weights could not be measured (the coefficient at ell = 1 is "
                                 "zero on most tokens); coefficients are used as measured")
        masked = sum(w is None for w in weights)
        if masked:
            notes.append(f"{masked} of {n} probe tokens had zero weight (masked) and were left out")
        values = [None if w is None else (c / w if w != 1.0 else c) for c, w in zip(raw, weights)]
        keep = [i for i in range(n) if values[i] is not None]
        fit_mask = [G.is_fit_point(ells[i]) for i in keep]
        tol = C.TOL if self.dtype == torch.float64 else 1e-4
        fit = C.classify([ells[i] for i in keep], [values[i] for i in keep], fit_mask, tol)
        if fit.skipped:
            notes.append(f"{fit.skipped} probe points gave a non-finite coefficient and were left out")
        if main.via_backward:
            notes.append("the loss was read from the tensor the function passed to backward()")
        # --- placement, old tracking, checks
        tracks, is_weight = self._old_tracking(ells, fit, weights, raw) if self.old is not None and \
            fit.template not in (None, "zero") else (None, None)
        if tracks == "mixed":
            notes.append("with old log-probs shifted by -0.3 the coefficient follows neither logp - ref nor "
                         "old - ref")
        placement, second = self._placement(main, fit, weights, values, ells, tracks)
        ell_only = per_token = None
        if not self.vocabulary and (fit.template != "zero" or big > C.ZERO):
            ell_only = self._same(self.call(ells, shift=REF_SHIFT).coef, raw)
            if not ell_only:
                notes.append("the coefficient also depends on the log-probs themselves, not only on "
                             "log(pi/pi_ref): it changes when both are shifted together")
            if uniform:
                rev = self.call(ells[::-1]).coef
                per_token = self._same(rev[::-1], raw)
                if not per_token:
                    notes.append("a token's coefficient depends on the other tokens' log-ratios "
                                 "(a sequence-level term)")
        # --- aggregation and scale
        aggregation, multiplier = ("per token (rewards)" if main.kind == "reward" else "unknown"), 1.0
        if main.kind == "loss" and fit.template not in (None, "zero"):
            aggregation, multiplier = self._aggregation(ells, raw, keep, n - masked)
            if multiplier is None:
                notes.append("the aggregation could not be determined: scale is per token as measured")
                multiplier = 1.0
        clamped = self._clamp_intervals(fit, ells, weights, keep, uniform and per_token is not False)
        family = self._family(fit, placement)
        principled = fit.template == F.PRINCIPLED and fit.scale > 0 and placement in ("as_loss", "in_reward")
        if main.reward_detached is False:
            notes.append("the rewards carry gradient (not detached): a policy-gradient surrogate on them adds a "
                         "term through the reward itself (THEORY P05); the coefficient above is the detached one")
        scale = None if fit.template is None else fit.scale * multiplier
        coefficient = {"zero": "0", None: "unmatched"}.get(fit.template) or F.COEFFICIENTS[fit.template][1]
        return CoefficientReport(
            family=family.name if family else None,
            coefficient=coefficient,
            principled=bool(principled),
            scale=scale,
            residual=C.residual_of(fit),
            max_rel_deviation=_deviation(fit, ells, values, set(fit.clamped)),
            template=fit.template,
            offset=fit.offset * multiplier,
            placement=placement,
            estimator=family.estimator if family else "unknown",
            minimizes=family.minimizes if family else "",
            mode="vocabulary" if self.vocabulary else "token",
            aggregation=aggregation,
            clamped=tuple(clamped),
            deviating=tuple(fit.deviating),
            alternatives=tuple(fit.alternatives),
            masked=masked,
            ell_only=ell_only,
            per_token=per_token,
            tracks=tracks,
            is_weight=is_weight,
            second_derivative=None if second is None else second * multiplier,
            reward_detached=main.reward_detached,
            notes=tuple(notes),
            ells=tuple(ells),
            measured=tuple(values),
        )

    # ---------------------------------------------------------------------------------- helpers
    @staticmethod
    def _same(a: Sequence[float], b: Sequence[float]) -> bool:
        big = max((abs(x) for x in b if math.isfinite(x)), default=0.0)
        return all((not math.isfinite(x) and not math.isfinite(y)) or abs(x - y) <= 1e-9 * max(big, C.ZERO)
                   for x, y in zip(a, b))

    def _family(self, fit: C.Fit, placement: str):
        if fit.template in (None, "zero"):
            return None
        if self.vocabulary:
            return F.family_for(fit.template, "as_loss", exact=True)
        return F.family_for(fit.template, placement)

    def _placement(self, main: Run, fit: C.Fit, weights, values, ells, tracks):
        """(placement, second derivative at delta = 1 per unit weight)."""
        if main.kind == "reward":
            return "in_reward", None
        if self.vocabulary:
            return "as_loss", None
        if fit.template in (None, "zero"):
            return "unknown", None
        h = [None if w is None or main.second is None else main.second[i] / w for i, w in enumerate(weights)]
        pts = [i for i in range(len(ells)) if h[i] is not None and values[i] is not None and
               G.is_fit_point(ells[i]) and ells[i] not in fit.clamped and abs(ells[i]) > 1e-3]
        second = None
        if pts:
            i0 = min(pts, key=lambda i: abs(ells[i]))
            second = h[i0]
        if tracks is not None and tracks.startswith("old"):
            return "in_reward", second
        if fit.template == "const" or not pts:
            return "as_loss", second
        big = max(abs(values[i]) for i in pts) or 1.0
        slopes = [abs(fit.scale * _derivative(fit.template, ells[i])) for i in pts]
        if max(slopes) <= 1e-9 * big:
            return "as_loss", second  # a piecewise-constant coefficient (sign): curvature cannot tell
        if all(abs(h[i]) <= 1e-9 * big for i in pts):
            return "in_reward", second  # detached coefficient times logp
        if all(abs(h[i] - values[i]) <= 1e-7 * max(abs(values[i]), 1e-9 * big) for i in pts):
            return "in_reward", second  # detached coefficient times exp(logp - old)
        return "as_loss", second

    def _old_tracking(self, ells, fit: C.Fit, weights, raw):
        try:
            off = self.call(ells, old_shift=OFF_POLICY_SHIFT).coef
        except Exception as e:  # noqa: BLE001 - the function may reject stale log-probs; say so
            return f"unknown ({type(e).__name__}: {e})", None
        s = OFF_POLICY_SHIFT
        w = math.exp(s)
        cands = (("current", lambda e: fit.predict(e)), ("current, importance-weighted", lambda e: w * fit.predict(e)),
                 ("old", lambda e: fit.predict(e - s)), ("old, importance-weighted", lambda e: w * fit.predict(e - s)))
        pts = [i for i, e in enumerate(ells) if weights[i] is not None and G.is_fit_point(e) and
               e not in fit.clamped and G.is_fit_point(e - s)]
        vals = {i: off[i] / weights[i] for i in pts}
        big = max((abs(v) for v in vals.values() if math.isfinite(v)), default=0.0) or 1.0
        for label, f in cands:
            if all(math.isfinite(vals[i]) and abs(vals[i] - f(ells[i])) <= 1e-6 * max(abs(vals[i]), 1e-6 * big)
                   for i in pts):
                ratio = None
                if "weighted" in label:
                    num = sum(abs(vals[i]) for i in pts)
                    den = sum(abs(f(ells[i]) / w) for i in pts)
                    ratio = num / den if den else None
                return label, ratio
        return "mixed", None

    def _aggregation(self, ells, raw, keep, active):
        """(text, multiplier from per-token gradient to per-unit-weight coefficient)."""
        try:
            b = self.call(ells, batch=2).coef
            t = self.call(ells, repeat=2).coef
        except Exception:  # noqa: BLE001 - a bound tensor of fixed shape cannot follow; report unknown
            return "unknown", None
        rb, rt = _ratio(b, raw, keep), _ratio(t, raw, keep)
        if rb is None or rt is None:
            return "unknown", None
        per_batch, per_len = _halved(rb), _halved(rt)
        if per_batch is None or per_len is None:
            return "unknown", None
        text = {
            (False, False): "summed over tokens",
            (True, True): "mean over tokens",
            (True, False): "per-sequence sums averaged over sequences",
            (False, True): "per-sequence token means summed over sequences",
        }[(per_batch, per_len)]
        length = (1 if self.vocabulary else active)
        return text, float(length if per_len else 1)

    def _clamp_intervals(self, fit: C.Fit, ells, weights, keep, refine: bool):
        intervals, bounds = C.clamp_intervals(fit, [ells[i] for i in keep])
        if refine and bounds and not self.vocabulary:
            try:
                self._bisect(bounds, intervals, fit, ells, weights, keep)
            except Exception:  # noqa: BLE001 - keep the grid-resolution boundaries
                pass
        return [tuple(iv) for iv in intervals]

    def _bisect(self, bounds, intervals, fit: C.Fit, ells, weights, keep):
        slots = [i for i in keep if weights[i] is not None][: len(bounds)]
        if len(slots) < len(bounds):
            return
        state = [[ok, cl] for _, _, ok, cl in bounds]
        for _ in range(BISECTIONS):
            probe = list(ells)
            mids = [(ok + cl) / 2 for ok, cl in state]
            for slot, m in zip(slots, mids):
                probe[slot] = m
            got = self.call(probe).coef
            for k, (slot, m) in enumerate(zip(slots, mids)):
                pred = fit.predict(m) * weights[slot]
                if abs(got[slot]) <= 1e-9 * abs(pred):
                    state[k][1] = m
                else:
                    state[k][0] = m
        for (iv, side, _, _), (ok, cl) in zip(bounds, state):
            intervals[iv][side] = (ok + cl) / 2


def _unbind_fills(fn: Callable):
    """``functools.partial(f, mask=ones)``: the fills move to the probe's bindings (so they are shaped on
    every call); other partial arguments stay bound."""
    fills: Dict[str, object] = {}
    while isinstance(fn, functools.partial) and any(isinstance(v, S.Fill) for v in fn.keywords.values()):
        fills = {**{k: v for k, v in fn.keywords.items() if isinstance(v, S.Fill)}, **fills}
        rest = {k: v for k, v in fn.keywords.items() if not isinstance(v, S.Fill)}
        fn = functools.partial(fn.func, *fn.args, **rest) if (fn.args or rest) else fn.func
    return fn, fills


def _grads(loss: torch.Tensor, leaf: torch.Tensor, second: bool):
    zeros = torch.zeros_like(leaf)
    if not loss.requires_grad:
        return zeros, (zeros if second else None)
    (g,) = torch.autograd.grad(loss, leaf, create_graph=second, allow_unused=True)
    if g is None:
        return zeros, (zeros if second else None)
    h = None
    if second:
        if g.requires_grad:
            (h,) = torch.autograd.grad(g.sum(), leaf, allow_unused=True)
        h = zeros if h is None else h
    return g.detach(), (h.detach() if h is not None else None)


def _derivative(template: str, ell: float, h: float = 1e-5) -> float:
    f = F.COEFFICIENTS[template][0]
    return (f(ell + h) - f(ell - h)) / (2 * h)


def _row(t: torch.Tensor, n: int) -> List[float]:
    # clone: autograd may hand back zeros without allocated storage, which tolist() rejects
    return t.reshape(t.shape[0], -1)[0, :n].to(torch.float64).clone().tolist()


def _ratio(new: Sequence[float], old: Sequence[float], keep) -> Optional[float]:
    rs = sorted(new[i] / old[i] for i in keep if math.isfinite(old[i]) and math.isfinite(new[i]) and
                abs(old[i]) > 1e-12 * max(abs(x) for x in old if math.isfinite(x)))
    return rs[len(rs) // 2] if rs else None


def _halved(r: float) -> Optional[bool]:
    if abs(r - 1.0) < 1e-6:
        return False
    if abs(r - 0.5) < 1e-6:
        return True
    return None


def _deviation(fit: C.Fit, ells, values, clamped) -> Optional[float]:
    """max |c - c_lin| / |c_lin - c_lin(0)| over fitted points with |ell| >= 0.1 (see CoefficientReport)."""
    if fit.template in (None, "zero"):
        pts = [(e, v) for e, v in zip(ells, values) if v is not None and math.isfinite(v)]
        near = sorted((p for p in pts if 0 < abs(p[0]) <= 0.05), key=lambda p: p[0])
        neg = [p for p in near if p[0] < 0]
        pos = [p for p in near if p[0] > 0]
        if fit.template is not None or not neg or not pos:
            return None
        (e0, v0), (e1, v1) = neg[-1], pos[0]
        slope = (v1 - v0) / (e1 - e0)
        c0 = v0 - slope * e0
    else:
        unit = F.SLOPES_AT_DELTA_ONE.get(fit.template)
        if unit is None:
            return None
        slope = fit.scale * unit
        c0 = fit.predict(0.0)
    if not slope > 0:
        return None
    worst = 0.0
    for e, v in zip(ells, values):
        if v is None or not math.isfinite(v) or not G.is_fit_point(e) or abs(e) < 0.1 or e in clamped:
            continue
        worst = max(worst, abs(v - c0 - slope * e) / abs(slope * e))
    return worst


def measure(fn: Callable, policy="logp", reference="ref_logp", *, old=None, kind: str = "auto",
            ells: Optional[Sequence[float]] = None, dtype: torch.dtype = torch.float64, device=None,
            **fixed) -> CoefficientReport:
    """Measure the gradient coefficient ``fn`` puts on the policy log-probs.

    ``policy`` / ``reference`` / ``old``: the parameters that receive the policy's, the reference's and
    the rollout policy's log-probs (a name, or :func:`klaudit.probe.logits` / :func:`klaudit.probe.model`
    for functions that take logits or models).  ``old`` defaults to being left unbound; when named it is
    a detached copy of the policy log-probs (on-policy), and a second run with it shifted shows whether
    the coefficient follows the rollout log-probs or carries an importance weight.

    ``**fixed`` binds every other parameter: ``ones`` / ``zeros`` / ``full(v)`` / ``per_sequence(v)``
    from :mod:`klaudit.probe` are shaped like the probe's tokens on each call; any other value is passed
    as is.  Bind advantages and task rewards to zeros: the probe measures what the KL term adds.

    ``kind``: "auto" (a scalar output is a loss, a per-token tensor is rewards), "loss" or "reward";
    for rewards the coefficient is that of the policy-gradient surrogate, ``-r_t``.
    """
    return Probe(fn, policy, reference, old, kind, dtype, device, fixed).report(ells)
