"""Which files need libcst at all.

Stage one reads each file's bytes and keeps those that can hold a KL term by themselves: they name
a KL (``kl``, ``kld``, ``divergence``), or they name log-probs *and* a reference/teacher.  Stage two
adds the files that stage-one files call into (helpers computing log-probs, aggregation functions),
found from the qualified names of their unresolved calls and imports, so cross-file linking sees
what it needs.  The prefilter never loses a term that the full analysis finds on the fixtures
(tested), and ``--no-prefilter`` turns it off.
"""
from __future__ import annotations

import re
from typing import Dict, Iterable, List, Set

from . import ir

# matched on the lower-cased bytes (case-insensitive patterns are several times slower), each behind a
# plain substring test that every match contains
KL_WORDS = re.compile(rb"(?<![a-z])kl|_kl|kl_|kld|divergence")
LOGP_WORDS = re.compile(rb"log_?probs?|logps?(?![a-z])|logprobs?|log_softmax|logits|log_pi|logpi")
REF_WORDS = re.compile(rb"(?<![a-z])ref(?![a-z])|ref_|_ref(?![a-z])|reference|teacher")


def candidate(data: bytes) -> bool:
    low = data.lower()
    if (b"kl" in low or b"divergence" in low) and KL_WORDS.search(low):
        return True
    return bool(b"log" in low and (b"ref" in low or b"teacher" in low) and LOGP_WORDS.search(low)
                and REF_WORDS.search(low))


def referenced_modules(summaries: Iterable) -> Set[str]:
    """Modules (dotted names) holding functions that KL-relevant functions of the given summaries
    call, and the modules of their classes' bases (methods reached through ``self``/``super``)."""
    from .link.linker import mentions_logprobs

    out: Set[str] = set()
    for ms in summaries:
        relevant_classes = set()
        for fs in ms.functions.values():
            if not any(mentions_logprobs(ev.value) for ev in fs.events):
                continue
            if fs.class_name:
                relevant_classes.add(fs.class_name)
            for ev in fs.events:
                for n in ir.walk(ev.value):
                    if isinstance(n, ir.Call):
                        for t in n.target:
                            if ":" in t:
                                continue
                            out.add(t.rpartition(".")[0])
                            out.add(t)  # a module called as a whole, or a package re-exporting it
        for q, cs in ms.classes.items():
            if q in relevant_classes:
                for b in cs.bases:
                    out.add(b.rpartition(".")[0])
    out.discard("")
    return out


def files_for_modules(modules: Set[str], module_of: Dict[str, str]) -> List[str]:
    """Paths whose module name equals, or ends with, one of ``modules`` (by dotted suffix)."""
    if not modules:
        return []
    by_suffix: Dict[str, List[str]] = {}
    for path, mod in module_of.items():
        parts = mod.split(".")
        for i in range(len(parts)):
            by_suffix.setdefault(".".join(parts[i:]), []).append(path)
    out: Set[str] = set()
    for m in modules:
        for p in by_suffix.get(m, ()):
            out.add(p)
    return sorted(out)
