"""Where a KL value goes: subtracted from a reward, added to a loss, logged, used as a mask, fed to
an adaptive controller, or returned for the caller to decide.

A sink is recognised by what the value is combined with (a reward or score tensor, a loss) and by
what receives it (``.backward()``, a name like ``policy_loss`` or ``token_level_rewards``, a metrics
dict, ``.item()``).  The sign convention: ``Placement.sign`` is +1 when the term *penalises* the
divergence (reward minus KL, loss plus KL), -1 when it rewards it.
"""
from __future__ import annotations

from typing import List, Optional

from .. import model as M
from .. import vocabulary as vocab
from ..extract.summary import (ASSIGN, BACKWARD, CONTROLLER, MASK, METRIC, RETURN, STORE, Event,
                               FunctionSummary)
from .components import Component, Other


def _target_tokens(target: str) -> List[str]:
    # metrics["actor/kl"] -> metrics, actor, kl ; self._metrics[mode]["kl"] -> self, metrics, mode, kl
    return list(vocab.tokens(target))


def _is_metric_target(target: str) -> bool:
    head = target.split("[", 1)[0]
    return any(vocab.is_metric_name(p) or p.lstrip("_").startswith("metric") for p in head.split("."))


def _is_reward_target(target: str) -> bool:
    if _is_metric_target(target):
        return False
    return vocab.is_reward_name(target.split("[", 1)[-1] if "[" in target else target)


def _is_loss_target(target: str) -> bool:
    if _is_metric_target(target):
        return False
    return vocab.is_loss_name(target.split("[", 1)[-1] if "[" in target else target)


def _value_sign(comp: Component) -> int:
    """-1 when the estimator is written negated (``ref - logp`` as the KL)."""
    from ..derive.coefficient import derive

    d = derive(comp.full())
    v = d.value_scale if d.kind == "estimator" else (d.loss_scale or d.value_scale)
    return -1 if v < 0 else 1


def event_placement(ev: Event, fs: FunctionSummary, comp: Component, others: List[Other]) -> Optional[M.Placement]:
    csign = comp.sign * (-1 if ev.aug == "-" else 1)

    def vsign() -> int:  # the sign the divergence itself enters with (derives: only when needed)
        return csign * _value_sign(comp)

    kinds = {o.kind for o in others}
    tgt = ev.target
    # where the value enters the reward or loss: the line that scales it by its coefficient when
    # that is in this function, else the statement that receives it
    loc = comp.coef_loc if comp.coef_loc is not None and comp.coef_loc.path == ev.loc.path and \
        ev.kind in (ASSIGN, STORE, RETURN) else ev.loc
    for nm in comp.names:
        if nm.startswith("@") and ":" in nm:
            kind, where = nm[1:].split(":", 1)
            sign = -csign if kind == M.IN_REWARD else csign
            return M.Placement(kind, ev.loc, sign, f"inside {where}", where)
    if ev.kind == BACKWARD:
        return M.Placement(M.AS_LOSS, loc, csign, "back-propagated", tgt)
    if ev.kind == METRIC:
        return M.Placement(M.METRIC, loc, 1, "logged", tgt)
    if ev.kind == MASK:
        return M.Placement(M.MASK_ONLY, loc, 1, "compared with a threshold (a mask or filter)", tgt)
    if ev.kind == CONTROLLER:
        return M.Placement(M.CONTROLLER, loc, 1, "fed to an adaptive KL controller", tgt)
    if ev.kind in (ASSIGN, STORE):
        if ev.kind == STORE and _is_metric_target(tgt):
            return M.Placement(M.METRIC, loc, 1, "stored in a metrics container", tgt)
        if "reward" in kinds or (_is_reward_target(tgt) and (ev.aug in ("+", "-") or vsign() < 0)):
            detail = "folded into the advantages" if vocab.is_kind(tgt, {"advantage", "advantages", "adv", "advs"}) \
                else ("folded into the returns" if vocab.is_kind(tgt, {"return", "returns"}) else
                      "subtracted from the reward")
            return M.Placement(M.IN_REWARD, loc, -csign, detail, tgt)
        if "loss" in kinds or _is_loss_target(tgt):
            return M.Placement(M.AS_LOSS, loc, csign, "added to a loss", tgt)
        return None
    if ev.kind == RETURN:
        if "reward" in kinds:
            return M.Placement(M.IN_REWARD, loc, -csign, "returned with the reward", fs.name)
        if "loss" in kinds:
            return M.Placement(M.AS_LOSS, loc, csign, "returned with the loss", fs.name)
        if vocab.is_loss_name(fs.name) or (fs.class_name and vocab.is_loss_name(fs.class_name.rsplit(".", 1)[-1])
                                            and fs.name in ("forward", "__call__")):
            return M.Placement(M.AS_LOSS, loc, csign, "returned from a loss function", fs.name)
        if vocab.is_reward_name(fs.name) and vsign() < 0:
            return M.Placement(M.IN_REWARD, loc, -csign, "returned from a reward function", fs.name)
        return None
    return None


def stronger(a: Optional[M.Placement], b: Optional[M.Placement]) -> Optional[M.Placement]:
    if a is None:
        return b
    if b is None:
        return a
    return b if M.PRECEDENCE[b.kind] > M.PRECEDENCE[a.kind] else a
