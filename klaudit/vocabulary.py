"""Naming conventions of RL training code, in one place.

Roles are decided from provenance first (see ``extract``); these name rules are the fallback and
give lower confidence.  The prefilter uses the same words, so a file it skips could not have
produced a term from names alone.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Optional, Tuple

_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")


@lru_cache(maxsize=65536)
def tokens(name: str) -> Tuple[str, ...]:
    """``ref_per_token_logps`` -> ('ref', 'per', 'token', 'logps'); camelCase split too."""
    return tuple(t.lower() for t in _SPLIT.split(name) if t)


# A token (or pair of adjacent tokens) that says "log-probability of tokens".
LOGP_TOKENS = {
    "logp", "logps", "logprob", "logprobs", "lp", "lps", "logpi", "lprob", "lprobs", "logprobas",
    "logli", "loglik", "loglikelihood", "loglikelihoods",
}
LOGP_PAIRS = {("log", "prob"), ("log", "probs"), ("log", "p"), ("log", "ps"), ("log", "pi"), ("log", "likelihood")}

REF_TOKENS = {"ref", "reference", "refs", "init", "initial", "sft", "prior", "anchor", "base", "frozen"}
OLD_TOKENS = {"old", "rollout", "behavior", "behaviour", "sampling", "sampler", "vllm", "inference", "prev",
              "previous", "mu", "gen", "generation", "generator", "infer", "stale", "engine"}
TEACHER_TOKENS = {"teacher", "expert", "target_model"}
POLICY_TOKENS = {"policy", "pi", "actor", "new", "cur", "curr", "current", "student", "online", "theta", "model",
                 "action", "per", "token"}

MASK_TOKENS = {"mask", "masks", "attention_mask", "padding", "valid", "weights"}
REWARD_TOKENS = {"reward", "rewards", "score", "scores", "return", "returns", "advantage", "advantages", "adv",
                 "advs", "rlhf", "rew", "rews", "gains"}
LOSS_TOKENS = {"loss", "losses", "objective", "cost"}
METRIC_TOKENS = {"metric", "metrics", "stats", "stat", "info", "infos", "log", "logs", "logger", "summary",
                 "wandb", "writer", "tb", "history", "record", "records", "tracker", "monitor"}
SCALE_TOKENS = {"beta", "coef", "coeff", "coefficient", "alpha", "lam", "lambda", "weight", "ctl", "ctrl", "scale",
                "kl_coef", "gamma", "eta", "tau", "temperature"}
CONFIG_ROOTS = {"config", "cfg", "args", "hparams", "opt", "opts", "options", "conf", "params", "hp", "training_args",
                "train_config", "algo_config", "settings", "flags"}
KL_TOKENS = {"kl", "kld", "kls", "kl_div", "divergence", "kldiv", "approxkl", "approx_kl"}

REF_MODEL_TOKENS = REF_TOKENS
POLICY_MODEL_TOKENS = {"model", "policy", "actor", "student", "net", "lm", "llm", "module"}


def has_logp(toks: Tuple[str, ...]) -> bool:
    if any(t in LOGP_TOKENS for t in toks):
        return True
    return any((a, b) in LOGP_PAIRS for a, b in zip(toks, toks[1:]))


def anchor_role(toks: Tuple[str, ...]) -> Optional[str]:
    """'ref', 'old', 'teacher' or None, from the tokens of a name."""
    s = set(toks)
    if s & TEACHER_TOKENS:
        return "teacher"
    if s & REF_TOKENS:
        return "ref"
    if s & OLD_TOKENS:
        return "old"
    return None


def logp_role(name: str) -> Optional[Tuple[str, str]]:
    """(role, confidence) for a name that denotes per-token log-probs, else None."""
    toks = tokens(name)
    if not toks or not has_logp(toks):
        return None
    a = anchor_role(toks)
    if a is not None:
        return a, "medium"
    return "policy", "medium"


def model_role(name: str) -> Optional[str]:
    """Role of a model object from its name: 'ref', 'teacher', 'policy' or None."""
    toks = tokens(name)
    if not toks:
        return None
    s = set(toks)
    if s & {"loss", "fn", "func", "function", "kl", "reward", "metric", "metrics", "optimizer", "optim", "scheduler",
            "config", "tokenizer", "processor", "fn_", "head", "value", "critic", "ctl", "ctrl", "controller",
            "scaler", "engine", "group", "groups", "wrapper", "path", "name", "names", "type", "dtype", "device"}:
        return None
    if s & TEACHER_TOKENS:
        return "teacher"
    if s & {"ref", "reference", "initial", "init", "frozen", "sft", "prior"}:
        return "ref"
    if s & POLICY_MODEL_TOKENS:
        return "policy"
    return None


def is_kind(name: str, vocab: set) -> bool:
    return any(t in vocab for t in tokens(name))


def is_loss_name(name: str) -> bool:
    return is_kind(name, LOSS_TOKENS)


def is_reward_name(name: str) -> bool:
    return is_kind(name, REWARD_TOKENS)


def is_mask_name(name: str) -> bool:
    toks = tokens(name)
    return bool(toks) and (toks[-1] in {"mask", "masks"} or "mask" in toks or toks[-1] in {"valid"})


def is_metric_name(name: str) -> bool:
    return is_kind(name, METRIC_TOKENS)


def is_kl_name(name: str) -> bool:
    toks = tokens(name)
    return any(t in KL_TOKENS or t.startswith("kl") and len(t) <= 4 for t in toks)


def is_config_root(name: str) -> bool:
    toks = tokens(name)
    return bool(toks) and (toks[-1] in CONFIG_ROOTS or name.lower() in CONFIG_ROOTS)


# The prefilter: a file can hold a KL term only if it names log-probs, a KL, or a divergence helper.
_PREFILTER_LOW = re.compile(
    rb"kl|log_?p|log_?prob|logprob|log_softmax|logsoftmax|logits|divergence|log_likelihood|loglik"
)


def mentions_kl_words(data: bytes) -> bool:
    """Does a file mention any KL-like word (case-insensitive)?  Matched on the lower-cased bytes behind
    substring tests, several times faster than a ``(?i)`` pattern."""
    low = data.lower()
    if b"kl" not in low and b"log" not in low and b"divergence" not in low:
        return False
    return _PREFILTER_LOW.search(low) is not None
