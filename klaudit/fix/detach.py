"""A reward penalty that carries gradient -> the same penalty, detached (KL301).

``.detach()`` is appended to the KL expression, so the reward (and the advantages built from it) no
longer back-propagate into the policy (THEORY.md P05).
"""
from __future__ import annotations

from .rewrite import Rewrite, Site

CODES = ("KL301",)


def apply(site: Site, rw: Rewrite) -> bool:
    rw.detach = True
    rw.notes.append("detach the KL that enters the reward (.detach())")
    return True
