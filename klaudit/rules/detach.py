"""KL3xx: what carries gradient and what must not (THEORY.md section 6: P05, P06)."""
from __future__ import annotations

from typing import Iterable

from .. import ir
from ..model import AS_LOSS, IN_REWARD, KLTerm
from .base import Hit, Project, penalises_reference
from .helpers_text import ctx as _ctx


def reward_not_detached(t: KLTerm, p: Project) -> Iterable[Hit]:
    if t.placement.kind != IN_REWARD or t.derivation.anchor not in ("ref", "teacher") or not t.reachable:
        return
    if ir.POLICY in t.live_grad:
        where = t.placement.detail or "the reward"
        d = t.derivation
        rc = d.reward_coefficient or "k"
        lc = d.loss_coefficient or "dk/dlog pi"
        principled = "" if rc == "-log(delta)" else " (principled: -log(delta))"
        extra = "log pi" if lc == "1" else f"({lc}) * log pi"
        yield Hit(
            f"KL {where} from log-probs that still carry gradient (a forward pass outside torch.no_grad, not "
            f"detached): the reward/advantage then back-propagates into the policy, so the intended reward "
            f"coefficient {rc}{principled} gains an extra {extra} (an entropy-like bonus "
            "with a log-prob surrogate, zero-mean noise with a ratio surrogate) on top of the policy gradient. "
            f"Compute the reward KL under torch.no_grad() or .detach() it{_ctx(t)}."
        )


def reference_has_gradient(t: KLTerm, p: Project) -> Iterable[Hit]:
    if t.placement.kind not in (AS_LOSS, IN_REWARD) or not penalises_reference(t):
        return
    if ir.REF in t.live_grad:
        yield Hit(
            "the reference log-probs come from a forward pass outside torch.no_grad and are not detached: the "
            "loss also back-propagates into the reference model (-c * grad log pi_ref with c = "
            f"{t.derivation.loss_coefficient or 'the loss coefficient'}), which drifts instead of "
            "staying an anchor (unless its parameters are frozen with requires_grad_(False)). Compute the "
            f"reference under torch.no_grad() or .detach() it{_ctx(t)}."
        )
