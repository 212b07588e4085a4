"""Decide what each tensor is: the policy's log-prob, the reference's, the rollout-time one, a mask...

Provenance first: a log-softmax of a model's logits gathered at the sampled tokens has the role of
the model (a reference model, the policy), a value computed under ``no_grad`` or detached carries no
gradient.  Where the IR holds only names (parameters, dict keys, attributes, values returned by
calls the linker could not resolve), the naming conventions of ``vocabulary`` decide, with lower
confidence.  ``concretize`` rewrites an expression so that every tensor is a ``Leaf`` with a role.
"""
from __future__ import annotations

from typing import Optional

from .. import ir
from .. import vocabulary as vocab
from ..ir import Const, Expr, Leaf, Lit, Op, Opaque, Param, Ref

INFORMATIVE_OPS = {"add", "mul", "pow", "exp", "log", "abs", "sign", "clamp", "fullkl", "max", "min"}


AGG_WORDS = ("mean", "sum", "agg", "reduce", "average", "avg", "total")


def is_aggregator(low: str) -> bool:
    """A helper whose name says it sums or averages (masked_mean, agg_loss, masked_sum, ...)."""
    if any(w in low for w in ("log_prob", "logprob", "logp", "kl", "reward", "advantage", "entropy")):
        return False
    return any(w in low for w in AGG_WORDS)


def collapse_choices(e: Expr) -> Expr:
    """Inside a KL core, a choice the options could not decide (two ways of computing the same
    log-probs) is represented by its first branch that carries log-probs."""
    def fn(x: Expr) -> Optional[Expr]:
        if isinstance(x, ir.Choice):
            live = [v for _, v in x.branches if not isinstance(v, ir.Dead) and not (isinstance(v, Lit) and v.value is None)]
            for v in live:
                if has_logp(v):
                    return v
            return live[0] if live else x.branches[0][1]
        return None

    return ir.transform(e, fn, {}, skip=lambda x: not ir.has_choice(x))


def leaf_from_name(name: str, loc=None, grad: Optional[bool] = None, why: str = "name") -> Expr:
    """The role a name implies, as a leaf (or a positive scale, or an opaque value)."""
    r = vocab.logp_role(name)
    if r is not None:
        role, conf = r
        return Leaf(role, name, grad, f"named `{name}`", conf, loc)
    toks = vocab.tokens(name)
    if "logits" in toks or "logit" in toks:
        role = vocab.anchor_role(toks) or ir.POLICY
        return Leaf(f"logits:{role}", name, grad, f"named `{name}`", "medium", loc)
    if vocab.is_mask_name(name):
        return Leaf(ir.MASK, name, False, f"named `{name}`", "medium", loc)
    if vocab.is_kind(name, vocab.SCALE_TOKENS) or (vocab.is_kl_name(name) and vocab.is_kind(
            name, {"ratio", "factor", "target", "horizon", "threshold", "thresh", "max", "min", "clip"})):
        return ir.Scale(name)
    if vocab.is_kl_name(name):
        return Leaf("kl", name, grad, f"named `{name}`", "low", loc)
    if vocab.is_reward_name(name):
        return Leaf("reward", name, grad, f"named `{name}`", "medium", loc)
    if vocab.is_loss_name(name):
        return Leaf("loss", name, grad, f"named `{name}`", "medium", loc)
    if vocab.is_kind(name, vocab.SCALE_TOKENS):
        return ir.Scale(name)
    return Opaque(name, grad)


def has_logp(e: Expr) -> bool:
    for r in ir.leaf_summary(e)[0]:
        if r in ir.LOGP_ROLES or r.startswith(ir.DIST) or r == "kl" or r == "fullkl":
            return True
    return False


def _model_role(e: Expr) -> Optional[str]:
    if isinstance(e, Ref) and e.kind == "model":
        return e.role or vocab.model_role(e.name.split(".")[-1])
    if isinstance(e, Param):
        return vocab.model_role(e.name)
    if isinstance(e, Op) and e.op == "named":
        return vocab.model_role(str(e.args[0].value))
    if isinstance(e, Op) and e.op in ("getattr",) and isinstance(e.args[1], Lit):
        return vocab.model_role(str(e.args[1].value))
    if isinstance(e, Op) and e.op == "name":
        return vocab.model_role(str(e.args[0].value))
    if isinstance(e, Opaque):
        return vocab.model_role(e.name)
    if isinstance(e, Leaf):
        return vocab.model_role(e.key)
    return None


def _config_base(e: Expr) -> bool:
    """A config object: a parameter or name like ``config``, ``args``, ``cfg``."""
    if isinstance(e, Param):
        return vocab.is_config_root(e.name)
    if isinstance(e, Op) and e.op == "name":
        return vocab.is_config_root(str(e.args[0].value))
    if isinstance(e, Opaque):
        return vocab.is_config_root(e.name)
    if isinstance(e, Ref) and e.kind == "config":
        return True
    return False


def _grad_of(e: Expr) -> Optional[bool]:
    return False if isinstance(e, Op) and e.op == "sg" else None


_CONCRETE_MEMO: dict = {}


def concretize(e: Expr, memo: Optional[dict] = None) -> Expr:
    """Replace parameters, names, unresolved calls and model forwards by role leaves.  The rewrite of a
    node depends on the node alone, so by default one process-wide memo serves every function (linked
    functions share their callees' subtrees)."""
    if memo is None:
        if len(_CONCRETE_MEMO) > 400_000:
            _CONCRETE_MEMO.clear()
        memo = _CONCRETE_MEMO

    def fn(x: Expr) -> Optional[Expr]:
        if isinstance(x, Param):
            return leaf_from_name(x.name, why="parameter")
        if isinstance(x, Op):
            op = x.op
            if op == "name":
                return leaf_from_name(str(x.args[0].value), x.loc)
            if op in ("getattr", "getitem") and isinstance(x.args[1], Lit) and _config_base(x.args[0]):
                return Ref("config", str(x.args[1].value))
            if op == "getattr" and isinstance(x.args[1], Lit):
                base = x.args[0]
                if isinstance(base, ir.Struct):
                    v = base.get(x.args[1].value)
                    if v is not None:
                        return v
                return leaf_from_name(str(x.args[1].value), x.loc, _grad_of(base))
            if op == "getitem":
                from ..link.linker import normalize

                n = normalize(x)
                if n is not x:
                    return n
                key = x.args[1]
                if isinstance(key, Lit) and isinstance(key.value, str):
                    return leaf_from_name(key.value, x.loc, _grad_of(x.args[0]))
                return x.args[0]
            if op == "select":
                from ..link.linker import normalize

                n = normalize(x)
                return n if n is not x else x.args[0]
            if op == "fn:model":
                role = _model_role(x.args[0])
                if role:
                    # a forward pass outside no_grad carries gradient (a no_grad one is wrapped in sg)
                    return Leaf(f"logits:{role}", f"logits@{x.loc.line if x.loc else 0}", True,
                                "model forward pass", "high", x.loc)
                return Opaque("model-output")
            if op in ("logsoftmax", "softmax", "gather"):
                base, detached = _peel(x.args[0])
                if isinstance(base, ir.Choice):
                    ch = base.rebuild(tuple(fn(Op(op, (b,), x.loc)) or Op(op, (b,), x.loc) for b in base.children()))
                    return ir.sg(ch) if detached else ch
            if op == "logsoftmax":
                a = x.args[0]
                base, detached = _peel(a)
                if isinstance(base, Leaf) and base.role.startswith("logits:"):
                    role = base.role.split(":", 1)[1]
                    leaf = Leaf(ir.DIST + role, base.key, base.grad, "log-softmax of model logits", "high", base.loc)
                    return ir.sg(leaf) if detached else leaf
                base = a.args[0] if isinstance(a, Op) and a.op == "sg" else a
                if isinstance(base, Leaf) and base.role.startswith("logits:"):
                    role = base.role.split(":", 1)[1]
                    return _wrap_like(a, Leaf(ir.DIST + role, base.key, base.grad, "log-softmax of model logits",
                                              "high", base.loc))
                return x
            if op == "softmax":
                a = x.args[0]
                base = a.args[0] if isinstance(a, Op) and a.op == "sg" else a
                if isinstance(base, Leaf) and base.role.startswith("logits:"):
                    role = base.role.split(":", 1)[1]
                    d = Leaf(ir.DIST + role, base.key, base.grad, "softmax of model logits", "high", base.loc)
                    return Op("exp", (_wrap_like(a, d),), x.loc)
                return x
            if op == "gather":
                a = x.args[0]
                base, detached = _peel(a)
                if isinstance(base, Leaf) and base.role.startswith(ir.DIST):
                    role = base.role[len(ir.DIST):]
                    leaf = Leaf(role, f"logp({base.key})", base.grad, "model log-probs at sampled tokens", "high", base.loc)
                    return ir.sg(leaf) if detached else leaf
                base = a.args[0] if isinstance(a, Op) and a.op == "sg" else a
                if isinstance(base, Leaf) and base.role.startswith(ir.DIST):
                    role = base.role[len(ir.DIST):]
                    return _wrap_like(a, Leaf(role, f"logp({base.key})", base.grad, "model log-probs at sampled tokens",
                                              "high", base.loc))
                return a
            if op == "log" and isinstance(x.args[0], Op) and x.args[0].op == "exp":
                return x.args[0].args[0]
            if op == "named":
                name = str(x.args[0].value)
                v = x.args[1]
                base = v.args[0] if isinstance(v, Op) and v.op == "sg" else v
                if isinstance(base, Leaf) and base.role.startswith("logits:") and vocab.logp_role(name):
                    # a model's output named as log-probs: the model says whose
                    role = base.role.split(":", 1)[1]
                    leaf = Leaf(role, name, False if base is not v else base.grad,
                                f"`{name}` returned by the {role} model", "high", base.loc)
                    return Op("named", (x.args[0], leaf), x.loc)
                outer = vocab.logp_role(name)
                if outer is not None:
                    inner = _name_only_leaf(v)
                    if inner is not None and (inner.role != outer[0] or inner.key != name):
                        # a role that only a name inside a helper gave: the name it is stored under here wins
                        return Op("named", (x.args[0], _wrap_like(v, Leaf(outer[0], name, inner.grad,
                                                                          f"named `{name}`", outer[1], x.loc))), x.loc)
                if _informative(v):
                    return x
                grad = False if (isinstance(v, Op) and v.op == "sg") else None
                return Op("named", (x.args[0], leaf_from_name(name, x.loc, grad)), x.loc)
        if isinstance(x, ir.Call):
            # a call the linker could not resolve (a library function): aggregation helpers keep
            # the per-token value; anything else is opaque
            name = x.display or (x.target[0] if x.target else "call")
            short = name.rsplit(".", 1)[-1].lower()
            targs = [a for a in x.children() if not isinstance(a, (Lit, Ref, Const))]
            if targs and is_aggregator(short):
                rest = [Op("fn:aggweight", (a,)) for a in targs[1:2]]
                return Op("agg", (ir.mul(targs[0], *rest) if rest else targs[0],)
                          + ((Lit("mean"),) if "mean" in short else ()), x.loc)
            return Op(f"fn:{name}", tuple(a for a in x.children() if not isinstance(a, (Lit, Ref))), x.loc)
        return None

    return ir.transform(e, fn, memo)


def _wrap_like(orig: Expr, new: Expr) -> Expr:
    if isinstance(orig, Op) and orig.op == "sg":
        return ir.sg(new)
    return new


def _informative(v: Expr) -> bool:
    """Does a value already say what it is (role leaves or arithmetic on them)?"""
    base = v
    while (isinstance(base, Op) and base.op in ("sg", "named", "agg", "at")) or isinstance(base, ir.Via):
        base = base.expr if isinstance(base, ir.Via) else (base.args[-1] if base.op == "named" else base.args[0])
    if isinstance(base, Leaf):
        return base.role != ir.TENSOR
    if isinstance(base, (Const, ir.Scale)):
        return True
    if isinstance(base, ir.Choice):
        return any(_informative(b) for _, b in base.branches)
    if isinstance(base, ir.Struct):
        return False
    if isinstance(base, Op) and base.op in INFORMATIVE_OPS:
        return has_logp(base) or base.op in ("add", "mul")
    if isinstance(base, Op) and base.op == "where":
        return True
    return False


def _scalar(e: Expr) -> bool:
    if isinstance(e, (Const, ir.Scale, Ref, Opaque)):
        return True
    return isinstance(e, Op) and e.op in ("pow", "mul", "sg") and all(_scalar(x) for x in e.args)


def _peel(a: Expr):
    """Look through names, locations, calls, stop-gradients and scalings by a number (a temperature):
    (the tensor, was it detached)."""
    detached = False
    while True:
        if isinstance(a, Op) and a.op in ("named", "at", "sg"):
            detached |= a.op == "sg"
            a = a.args[-1]
        elif isinstance(a, ir.Via):
            a = a.expr
        elif isinstance(a, Op) and a.op == "mul" and sum(1 for x in a.args if not _scalar(x)) == 1:
            a = next(x for x in a.args if not _scalar(x))
        else:
            return a, detached


def _name_only_leaf(v: Expr) -> Optional[Leaf]:
    """A log-prob leaf standing for ``v`` when every log-prob in ``v`` got its role from a name
    only (inside a helper, say) and they all agree: the name ``v`` is stored under here is closer."""
    logps = [n for n in ir.walk(v) if isinstance(n, Leaf) and (n.role in ir.LOGP_ROLES or n.role == "kl"
                                                                or n.role.startswith(ir.DIST))]
    if not logps or not all(n.why.startswith("named") or n.why == "parameter" for n in logps):
        return None
    if len({(n.role, n.key) for n in logps}) != 1:
        return None
    return logps[0]


def unwrap_named(e: Expr) -> Expr:
    while isinstance(e, Op) and e.op == "named":
        e = e.args[1]
    return e


def name_of(e: Expr) -> Optional[str]:
    if isinstance(e, Op) and e.op == "named":
        return str(e.args[0].value)
    return None
