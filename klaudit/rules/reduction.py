"""KL5xx: reduction and masking (THEORY.md sections 3.2, 6: P14, P17)."""
from __future__ import annotations

from typing import Iterable

from ..model import AS_LOSS, IN_REWARD, KLTerm
from .base import Hit, Project, penalises_reference
from .helpers_text import ctx as _ctx


def _coef(t: KLTerm) -> str:
    return t.coefficient() if t.coefficient() != "unknown" else "c"


def kl_over_padding(t: KLTerm, p: Project) -> Iterable[Hit]:
    if t.placement.kind not in (AS_LOSS, IN_REWARD) or not penalises_reference(t):
        return
    if t.agg in ("mean", "sum", "seq-mean-token-sum") and not t.masked and "mask" in t.context:
        yield Hit(
            f"the KL is {'averaged' if t.agg == 'mean' else 'summed'} over every position although this function "
            "has a token mask: padding and prompt positions add their coefficient "
            f"{_coef(t)} at garbage log-ratios to the gradient"
            f"{', and the pads in the denominator rescale beta' if t.agg == 'mean' else ''}. "
            f"Multiply by the response mask{' and divide by mask.sum()' if t.agg == 'mean' else ''}{_ctx(t)}."
        )


def normalization_rescales_beta(t: KLTerm, p: Project) -> Iterable[Hit]:
    if t.placement.kind != AS_LOSS or not penalises_reference(t):
        return
    if t.agg in ("token-mean", "mean"):
        yield Hit(
            f"the KL loss is averaged over tokens: each token's coefficient {_coef(t)} is weighted by "
            "beta / (number of tokens) instead of beta, "
            "so the effective beta depends on the batch's lengths (long answers are regularised less per token "
            "with a per-sequence mean). Sum over tokens per sequence and average over sequences to make beta the "
            f"coefficient of the sequence KL{_ctx(t)}."
        )
