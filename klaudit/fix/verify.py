"""A fix is kept only if the fixed file, linted again, shows that it did what it says.

The file is re-linted alone, in memory, with every rule on: the fixed findings must be gone from the
edited lines, no new finding may appear there (other than the preview rules' notes on every
per-token loss), and a term placed in a loss or a reward must still be there, placed the same way.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, FrozenSet, List, Optional, Tuple

from ..model import AS_LOSS, IN_REWARD, Finding, KLTerm

NOTES = frozenset({"KL108", "KL502"})  # preview rules that fire on any per-token loss or normalisation
# what the estimator itself does, hidden while the sign was wrong (k3 subtracted from a loss is a sign
# error; added, it is k3 as a loss): a fix of the sign alone may reveal these, and they keep their own fix
LATENT = frozenset({"KL101", "KL102", "KL103", "KL104", "KL105", "KL107", "KL109", "KL203", "KL401", "KL501"})


@dataclasses.dataclass(frozen=True)
class Lint:
    findings: Tuple[Finding, ...]
    terms: Tuple[KLTerm, ...]

    def codes(self, lines: Tuple[int, int]) -> FrozenSet[str]:
        lo, hi = lines
        return frozenset(f.code for f in self.findings if lo <= f.line <= hi or lo <= f.term_line <= hi)

    def placed(self, function: str, lines: Tuple[int, int]) -> List[KLTerm]:
        lo, hi = lines
        return [t for t in self.terms if t.function == function and lo <= t.loc.line <= hi
                and t.placement.kind in (AS_LOSS, IN_REWARD)]


class Verifier:
    def __init__(self, cfg):
        self.cfg = dataclasses.replace(cfg, select=["ALL"], extend_select=[], ignore=[], per_file_ignores={},
                                       preview=True, fixes=False)
        self._memo: Dict[Tuple[str, str], Optional[Lint]] = {}

    def lint(self, path: str, text: str) -> Optional[Lint]:
        key = (path, text)
        if key not in self._memo:
            self._memo[key] = self._lint(path, text)
        return self._memo[key]

    def _lint(self, path: str, text: str) -> Optional[Lint]:
        from .. import engine
        from ..source import SourceText

        res = engine.analyze_source(SourceText(path, text, "\n", "utf-8", False), self.cfg.root)
        if res.error is not None or res.summary is None:
            return None
        terms = engine.collect_terms([res], self.cfg)
        findings = engine.apply_rules(terms, self.cfg, [res])
        return Lint(tuple(findings), tuple(terms))

    def check(self, term: KLTerm, fixed: FrozenSet[str], path: str, old: str, new: str,
              old_lines: Tuple[int, int], new_lines: Tuple[int, int], sign_only: bool = False) -> Optional[str]:
        """None when the fix is verified, else why not.  ``old_lines``: the statements the fix concerns
        (the estimator's, the placement's), ``new_lines`` the same once fixed."""
        before, after = self.lint(path, old), self.lint(path, new)
        if before is None or after is None:
            return "the file could not be linted again"
        left = fixed & after.codes(new_lines)
        if left:
            return f"{', '.join(sorted(left))} still reported after the fix"
        new_codes = after.codes(new_lines) - before.codes(old_lines) - NOTES - (LATENT if sign_only else frozenset())
        if new_codes:
            return f"the fix would introduce {', '.join(sorted(new_codes))}"
        kinds = {t.placement.kind for t in before.placed(term.function, old_lines)}
        got = {t.placement.kind for t in after.placed(term.function, new_lines)}
        if not kinds <= got:
            return "the fixed term is no longer recognised in the loss or reward"
        return None
