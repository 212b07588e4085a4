"""Models of library APIs whose KL code lives outside the linted tree.

Like a taint analyser's models of library functions: a few well-known entry points of RL libraries
compute a KL term internally, so a repository-only analysis would not see it.  Each model builds, at
the call site, the IR of what the library computes (on tensors the library creates from the call's
arguments), marked with the placement the library gives it.  Only names of the libraries' public
APIs appear here; the semantics are those documented by the libraries (THEORY.md section 5).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

from .. import ir
from ..ir import Call, Choice, Cond, Const, Expr, Leaf, Lit, Loc, Op, OptionKey, Struct

# a name wrapper the placement stage reads: "@<placement>:<where>"
MARK = "@"


def marked(placement: str, where: str, value: Expr, loc: Optional[Loc]) -> Expr:
    return Op("named", (Lit(f"{MARK}{placement}:{where}"), value), loc)


def _leaf(role: str, key: str, grad, why: str, loc) -> Leaf:
    return Leaf(role, key, grad, why, "medium", loc)


def _k(kind: str, lp: Expr, ref: Expr, loc) -> Expr:
    ell = ir.sub(lp, ref)
    if kind == "k1":
        return Op("add", (lp, ir.neg(ref)), loc)
    if kind == "abs":
        return Op("abs", (ell,), loc)
    if kind == "k2":
        return Op("mul", (Const(0.5), Op("pow", (ell, Const(2.0)))), loc)
    if kind == "k3":
        return Op("add", (Op("exp", (ir.neg(ell),)), ell, Const(-1.0)), loc)
    return ir.Dead(loc, f"{kind} not modelled")


def _kw(call: Call, name: str) -> Optional[Expr]:
    for k, v in call.kwargs:
        if k == name:
            return v
    return None


def _option(value: Optional[Expr], default: str, key_name: str, display: str, branches: Dict[str, str],
            build: Callable[[str], Expr], loc) -> Expr:
    """A choice over a library option: a literal argument decides; a config value stays an option."""
    if isinstance(value, Lit) and isinstance(value.value, str):
        return build(branches.get(value.value, "unknown"))
    if isinstance(value, ir.Ref) and value.kind == "config" and value.name:
        key = OptionKey("config", value.name, value.name)
    else:
        key = OptionKey("param", key_name, display, Lit(default))
    out = []
    for lit, kind in branches.items():
        out.append((Cond("in", key, (lit,)), build(kind)))
    out.append((None, ir.Dead(loc, "unknown option")))
    return Choice(tuple(out), loc)


def trl_ppo_config(call: Call) -> Expr:
    """trl's (legacy) ``PPOConfig``: ``PPOTrainer.step`` subtracts ``kl_ctl * KL`` per token from the
    rewards, with KL chosen by ``kl_penalty`` ('kl' by default).  The term is placed at the argument
    that configures the KL (``kl_penalty``, the adaptive controller's ``target``, ...), else the call."""
    loc = call.loc
    kwl = dict(call.kwlocs)
    for k in ("kl_penalty", "init_kl_coef", "adap_kl_ctrl", "target", "horizon"):
        if k in kwl:
            loc = kwl[k]
            break
    lp = _leaf(ir.OLD, "logprobs (inside trl.PPOTrainer.step)", False, "rollout log-probs computed by trl", loc)
    ref = _leaf(ir.REF, "ref_logprobs (inside trl.PPOTrainer.step)", False, "reference log-probs computed by trl",
                loc)
    est = _option(_kw(call, "kl_penalty"), "kl", "kl_penalty", "PPOConfig(kl_penalty=...)",
                  {"kl": "k1", "abs": "abs", "mse": "k2"}, lambda k: _k(k, lp, ref, loc), loc)
    est = Op("at", (est,), loc)
    return Struct((("kl_reward", marked("in_reward", "trl.PPOTrainer.step", ir.neg(ir.mul(ir.Scale("kl_ctl"), est)),
                                        loc)),))


def located(v: Expr, loc) -> Expr:
    return Op("at", (v,), loc) if loc is not None else v


def liger_grpo_call(call: Call) -> Expr:
    """liger-kernel's ``LigerFusedLinearGRPOLoss(...)(...)``: returns (loss, metrics); the loss adds
    ``beta * k3`` of the policy log-probs it computes (with gradient) and ``ref_per_token_logps``."""
    loc = call.loc
    lp = _leaf(ir.POLICY, "per_token_logps (inside LigerFusedLinearGRPOLoss)", True,
               "policy log-probs computed by liger-kernel from the hidden states", loc)
    ref_arg = _kw(call, "ref_per_token_logps")
    ref = Op("named", (Lit("ref_per_token_logps"), ref_arg), loc) if ref_arg is not None else \
        _leaf(ir.REF, "ref_per_token_logps", False, "reference log-probs passed to liger-kernel", loc)
    kl = _k("k3", lp, ref, loc)
    loss = marked("as_loss", "liger_kernel LigerFusedLinearGRPOLoss", ir.mul(ir.Scale("beta"), kl), loc)
    return Struct(((0, loss), (1, ir.Opaque("metrics"))))


def trl_kto_loss(call: Call) -> Expr:
    """trl's ``KTOTrainer.kto_loss``: (losses, chosen_rewards, rejected_rewards, kl) where kl is the
    detached, zero-clamped batch mean of policy minus reference log-ratios on mismatched pairs (a
    reference point inside the sigmoid, not a regulariser)."""
    loc = call.loc
    args = list(call.args)
    pol = args[2] if len(args) > 2 else _leaf(ir.POLICY, "policy_KL_logps", None, "", loc)
    ref = args[5] if len(args) > 5 else _leaf(ir.REF, "reference_KL_logps", None, "", loc)
    kl = ir.sg(Op("clamp", (Op("agg", (_k("k1", pol, ref, loc),)), Const(0.0), Lit(None)), loc))
    return Struct(((0, ir.Opaque("losses")), (1, ir.Opaque("chosen_rewards")), (2, ir.Opaque("rejected_rewards")),
                   (3, Op("named", (Lit("kl"), kl), loc))))


# qualified name (as imported) -> model.  Constructors of callable loss objects map to ("object", name).
FUNCTIONS: Dict[str, Callable[[Call], Expr]] = {
    "trl.PPOConfig": trl_ppo_config,
    "trl.trainer.PPOConfig": trl_ppo_config,
    "trl.trainer.ppo_config.PPOConfig": trl_ppo_config,
}
OBJECTS: Dict[str, Callable[[Call], Expr]] = {
    "liger_kernel.chunked_loss.LigerFusedLinearGRPOLoss": liger_grpo_call,
    "liger_kernel.chunked_loss.grpo_loss.LigerFusedLinearGRPOLoss": liger_grpo_call,
}
METHODS: Dict[Tuple[str, str], Callable[[Call], Expr]] = {
    ("trl.KTOTrainer", "kto_loss"): trl_kto_loss,
    ("trl.trainer.KTOTrainer", "kto_loss"): trl_kto_loss,
    ("trl.trainer.kto_trainer.KTOTrainer", "kto_loss"): trl_kto_loss,
}


def function(qual: str) -> Optional[Callable[[Call], Expr]]:
    return FUNCTIONS.get(qual)


def object_class(qual: str) -> Optional[str]:
    return qual if qual in OBJECTS else None


def method(base_qual: str, meth: str) -> Optional[Callable[[Call], Expr]]:
    return METHODS.get((base_qual, meth))
