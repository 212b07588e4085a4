"""The coefficient of a KL implementation measured on one real batch (what ``wrap`` runs).

Every argument of the real call is copied (detached, floating tensors in float64, on their own device)
and the function is run a few times with the reference log-probs moved while the policy log-probs stay
at their real values:

* ref = logp (ell = 0 on every token) and ref = logp - 1 (ell = 1): their difference is each token's
  weight w_t (c(1) - c(0)) with everything that does not depend on the reference (the policy-gradient
  term with its real advantages, an entropy bonus, ...) cancelled; tokens where it is 0 are masked;
* ref = logp - ell_t with the probe's grid of log-ratios spread over the tokens: the normalised
  rho_t = (g_t - g_t(ell=0)) / |w_t (c(1) - c(0))| = (c(ell_t) - c(0)) / |c(1) - c(0)| is fitted
  against the coefficient templates (affine invariance keeps the template's identity); the mixed
  derivative d2L/dlogp dref tells an as-loss term (non-zero) from a detached coefficient (zero);
* the real reference: rho at the batch's own log-ratios, for the deviation from -log(delta) over the
  deltas seen in this batch, and as a check of the grid fit.

A coefficient without log-ratio dependence (c(1) = c(0)) is a constant: k1 as loss if the loss still
depends on the reference, no KL gradient at all otherwise.  The scale (beta and the aggregation) is
not recovered here: ``measure`` gives it.
"""
from __future__ import annotations

import contextlib
import inspect
from typing import Callable, Dict, List, Optional, Tuple

import torch

from ..derive import families as F
from . import classify as C
from . import grid as G
from .call import capture_backward, interpret
from .errors import ProbeError
from .report import CoefficientReport

DTYPE = torch.float64


def _copy(x):
    if isinstance(x, torch.Tensor):
        dt = DTYPE if x.is_floating_point() else x.dtype
        return x.detach().to(dtype=dt, copy=True)
    if isinstance(x, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in x):
        return type(x)(_copy(v) for v in x) if isinstance(x, list) else tuple(_copy(v) for v in x)
    if isinstance(x, dict) and any(isinstance(v, torch.Tensor) for v in x.values()):
        return {k: _copy(v) for k, v in x.items()}
    return x


class _Batch:
    def __init__(self, fn: Callable, args, kwargs, policy: str, reference: str, kind: str):
        self.fn, self.kind = fn, kind
        self.sig = inspect.signature(fn)
        self.bound = self.sig.bind(*args, **kwargs)
        for name in (policy, reference):
            if name not in self.bound.arguments or not isinstance(self.bound.arguments[name], torch.Tensor):
                raise ProbeError(f"the call has no tensor argument {name!r}")
        self.policy, self.reference = policy, reference
        lp = self.bound.arguments[policy]
        rf = self.bound.arguments[reference]
        try:
            self.real_ref = torch.broadcast_to(rf.detach().to(DTYPE), lp.shape).clone()
        except RuntimeError:
            raise ProbeError(f"{reference!r} of shape {tuple(rf.shape)} does not broadcast to {policy!r} "
                             f"of shape {tuple(lp.shape)}") from None
        self.base = lp.detach().to(dtype=DTYPE, copy=True)

    def run(self, ref: torch.Tensor, second: bool = False):
        """(dL/dlogp, dL/dref, d2L/dlogp dref summed, output kind) at these reference log-probs."""
        b = self.sig.bind(*self.bound.args, **self.bound.kwargs)
        for k, v in list(b.arguments.items()):
            b.arguments[k] = _copy(v)
        leaf = self.base.clone().requires_grad_(True)
        rleaf = ref.detach().clone().requires_grad_(True)
        b.arguments[self.policy] = leaf
        b.arguments[self.reference] = rleaf
        dev = leaf.device.type
        autocast_off = torch.autocast(device_type=dev, enabled=False) if dev in ("cpu", "cuda") \
            else contextlib.nullcontext()
        with torch.enable_grad(), autocast_off:
            with capture_backward() as seen:
                out = self.fn(*b.args, **b.kwargs)
            o = interpret(out, self.kind, tuple(leaf.shape), seen)
            if o.kind == "reward":
                return -o.reward.detach().to(DTYPE), torch.zeros_like(leaf), None, "reward"
            loss = o.loss
            if not loss.requires_grad:
                z = torch.zeros_like(leaf)
                return z, z, (z if second else None), "loss"
            g, gr = torch.autograd.grad(loss, [leaf, rleaf], create_graph=second, allow_unused=True)
            g = torch.zeros_like(leaf) if g is None else g
            gr = torch.zeros_like(leaf) if gr is None else gr
            m = None
            if second:
                m = torch.zeros_like(leaf)
                if g.requires_grad:
                    (mm,) = torch.autograd.grad(g.sum(), rleaf, allow_unused=True)
                    m = m if mm is None else mm
                m = m.detach().clone()  # clone: autograd's zeros may have no allocated storage
        return g.detach().clone(), gr.detach().clone(), m, "loss"


def _grid_order() -> List[float]:
    ells = G.default_ells()
    return [e for e in ells if G.is_fit_point(e)] + [e for e in ells if not G.is_fit_point(e)]


def measure_batch(fn: Callable, args: Tuple, kwargs: Dict, policy: str, reference: str, kind: str = "auto",
                  step: Optional[int] = None) -> CoefficientReport:
    """Measure ``fn`` on detached float64 copies of one real call's arguments (see module docstring)."""
    bt = _Batch(fn, args, kwargs, policy, reference, kind)
    base = bt.base
    g0, dref0, _, out_kind = bt.run(base)
    gu, _, _, _ = bt.run(base - G.UNIT_ELL)
    du = (gu - g0).flatten()
    finite = torch.isfinite(du)
    big = float(du[finite].abs().max()) if bool(finite.any()) else 0.0
    active = finite & (du.abs() > 1e-12 * big) if big > C.ZERO else torch.zeros_like(finite)
    idx = active.nonzero().flatten()
    notes: List[str] = []
    observed_all = (base - bt.real_ref).flatten()
    if idx.numel() == 0:
        has_ref = bool((dref0.abs() > 0).any())
        template = "const" if has_ref else "zero"
        fam = F.family_for("const", "as_loss") if has_ref else None
        vals = observed_all[torch.isfinite(observed_all)]
        obs = (float(vals.min()), float(vals.max())) if vals.numel() else None
        masked = int((dref0.abs() == 0).sum()) if has_ref else 0
        return CoefficientReport(
            family=fam.name if fam else None, coefficient="1" if has_ref else "0", principled=False, scale=None,
            masked=masked,
            residual=0.0, max_rel_deviation=None, template=template, placement="as_loss" if has_ref else "unknown",
            estimator=fam.estimator if fam else "unknown", minimizes=fam.minimizes if fam else "",
            aggregation="not measured (see measure)", observed=obs, step=step,
            notes=("the coefficient does not depend on the log-ratio",) if has_ref else
            ("no gradient depends on the reference log-probs: no KL term reaches the loss's gradient",))
    order = _grid_order()
    k = idx.numel()
    dev = base.device
    gi = torch.arange(k, device=dev) % len(order)  # grid index of each active token
    ell_tok = torch.zeros(base.numel(), dtype=DTYPE, device=dev)
    ell_tok[idx] = torch.tensor(order, dtype=DTYPE, device=dev)[gi]
    gG, _, m, _ = bt.run(base - ell_tok.view_as(base), second=out_kind == "loss")
    du_a = du[idx].abs()  # |w_t (c(1) - c(0))|: keeps the sign of the coefficient
    g0_a = g0.flatten()[idx]
    rho = (gG.flatten()[idx] - g0_a) / du_a
    # fit on one token per grid value (the first); every other token is checked against the fit below
    n_rep = min(k, len(order))
    assigned = order[:n_rep]
    rho_rep = rho[:n_rep].tolist()
    fit_mask = [G.is_fit_point(e) for e in assigned]
    fit = C.classify(assigned, rho_rep, fit_mask)
    masked = base.numel() - k
    if masked:
        notes.append(f"{masked} of {base.numel()} tokens had no weight on the log-ratio (masked) and were left out")
    if k > n_rep:
        same = rho[:n_rep][gi[n_rep:]]
        spread = ((rho[n_rep:] - same).abs() / same.abs().clamp_min(1e-12))
        spread = spread[torch.isfinite(spread)]
        if spread.numel() and float(spread.max()) > 1e-6:
            notes.append("tokens given the same log-ratio got different normalised coefficients (the "
                         "coefficient depends on more than the token's own log-ratio)")
    # placement: an as-loss term has a mixed derivative d2L/dlogp dref, a detached coefficient none
    placement = "in_reward" if out_kind == "reward" else "unknown"
    if out_kind == "loss" and fit.template not in (None, "zero"):
        if fit.template == "const":
            placement = "as_loss"
        else:
            fit_tok = torch.tensor(fit_mask, device=dev)[gi]
            mm = m.flatten()[idx].abs()[fit_tok]
            diff = (gG.flatten()[idx] - g0_a).abs()[fit_tok]
            scale = float(diff.max()) if diff.numel() else 0.0
            placement = "in_reward" if bool((mm <= 1e-9 * max(scale, C.ZERO)).all()) else "as_loss"
    family = F.family_for(fit.template, placement) if fit.template not in (None, "zero") else None
    if fit.template not in (None, "zero") and fit.scale < 0:
        notes.append("the coefficient has the sign opposite to a KL penalty: it ascends the KL")
    # the batch's own log-ratios
    gR, _, _, _ = bt.run(bt.real_ref)
    ell_real = observed_all[idx]
    rho_real = (gR.flatten()[idx] - g0_a) / du_a
    ok = torch.isfinite(rho_real) & torch.isfinite(ell_real)
    observed = (float(ell_real[ok].min()), float(ell_real[ok].max())) if bool(ok.any()) else None
    deviation = None
    if fit.template not in (None, "zero") and bool(ok.any()):
        e_ok, r_ok = ell_real[ok], rho_real[ok]
        sample = torch.linspace(0, e_ok.numel() - 1, min(128, e_ok.numel()), device=dev).long()
        pairs = [(r, fit.predict(e)) for e, r in zip(e_ok[sample].tolist(), r_ok[sample].tolist()) if abs(e) > 1e-6]
        worst_fit = max((abs(r - p) / max(abs(r), abs(p), 1e-12) for r, p in pairs), default=0.0)
        if worst_fit > 1e-5:
            notes.append(f"at the batch's own log-ratios the coefficient departs from the grid fit "
                         f"(relative error up to {worst_fit:.3g})")
        unit = F.SLOPES_AT_DELTA_ONE.get(fit.template)
        if unit is not None and fit.scale * unit > 0:
            slope, c0 = fit.scale * unit, fit.predict(0.0)
            sel = e_ok.abs() >= 0.1
            if not bool(sel.any()):
                sel = e_ok.abs() > 1e-6
            if bool(sel.any()):
                e, r = e_ok[sel], r_ok[sel]
                deviation = float(((r - c0 - slope * e).abs() / (slope * e).abs()).max())
    intervals, _ = C.clamp_intervals(fit, assigned)
    grid_pts: Dict[float, float] = dict(zip(assigned, rho_rep))
    ells_sorted = sorted(grid_pts)
    coefficient = {"zero": "0", None: "unmatched"}.get(fit.template) or F.COEFFICIENTS[fit.template][1]
    return CoefficientReport(
        family=family.name if family else None,
        coefficient=coefficient,
        principled=bool(fit.template == F.PRINCIPLED and fit.scale > 0 and placement in ("as_loss", "in_reward")),
        scale=None,
        residual=C.residual_of(fit),
        max_rel_deviation=deviation,
        template=fit.template,
        offset=0.0,
        placement=placement,
        estimator=family.estimator if family else "unknown",
        minimizes=family.minimizes if family else "",
        aggregation="not measured (see measure)",
        clamped=tuple(tuple(iv) for iv in intervals),
        deviating=tuple(sorted(set(fit.deviating))),
        alternatives=tuple(fit.alternatives),
        masked=masked,
        notes=tuple(notes),
        ells=tuple(ells_sorted),
        measured=tuple(grid_pts[e] for e in ells_sorted),
        observed=observed,
        step=step,
    )
