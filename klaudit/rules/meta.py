"""KL9xx: findings about the analysis itself (reachability)."""
from __future__ import annotations

from typing import Iterable

from ..model import KLTerm
from .base import Hit, Project


def unreachable_kl_branch(t: KLTerm, p: Project) -> Iterable[Hit]:
    if not t.reachable and t.derivation.kind in ("estimator", "surrogate", "full"):
        yield Hit(
            "this KL expression can never run: every option value that reaches it makes an earlier call raise "
            "(for example a suffixed option name that the helper it is first passed to does not accept), so its "
            f"coefficient ({t.coefficient()}) is never applied. Fix the dispatch (strip the suffix before the "
            "first call) or remove the branch."
        )
