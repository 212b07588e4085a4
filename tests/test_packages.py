"""Every multi-file package under ``fixtures/packages/<capability>/`` is linted as a project of its own
(its directory is the root, as ``cd pkg && klaudit check .`` would), and the result is checked
against the annotations written inline in all of its files (vocabulary: ``tests/expectations.py``):
every finding and every term must be annotated, with its confidence, its shipped defaults (key, value,
file, line, source) and, for a term chosen by an option, every variant.  A package whose files hold a
``# klaudit-test: preview`` line is linted with the preview rules on."""
import dataclasses
import functools
import os
from collections import Counter
from typing import Dict, List

import pytest

from conftest import FIXTURES
from expectations import LineAnnotations, VariantSpec, option_values, read_package

from klaudit import engine
from klaudit.config import Config

PACKAGES_DIR = os.path.join(FIXTURES, "packages")
NOT_ANNOTATED = {"fixes"}  # inputs of test_fixes.py (one file per fix kind), not capability packages
PACKAGES = sorted(d for d in os.listdir(PACKAGES_DIR)
                  if os.path.isdir(os.path.join(PACKAGES_DIR, d)) and d not in NOT_ANNOTATED and not d.startswith("."))
ESTIMATOR_ALIASES = {"k3_inverted": "k3inv"}


def _preview(root: str) -> bool:
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith(".py"):
                with open(os.path.join(dirpath, f), encoding="utf-8") as fh:
                    if any(line.strip() == "# klaudit-test: preview" for line in fh):
                        return True
    return False


@functools.lru_cache(maxsize=None)
def lint(name: str, prefilter: bool = True):
    root = os.path.join(PACKAGES_DIR, name)
    cfg = Config(root=root)
    cfg.preview = _preview(root)
    return engine.run([root], cfg, prefilter=prefilter, jobs=1)


def _rel(root: str, path: str) -> str:
    return os.path.relpath(os.path.abspath(path), root).replace(os.sep, "/")


def _where(root: str, text: str) -> str:
    """``path:line`` (as the analyzer prints a call site) relative to the package root."""
    p, _, line = text.rpartition(":")
    return f"{_rel(root, p)}:{line}"


def got_variant(root: str, v) -> VariantSpec:
    opts = tuple(("called at", _where(root, vals)) if o == "called at" else (o, option_values(vals))
                 for o, vals in v.options)
    est = v.derivation.estimator
    return VariantSpec(opts, ESTIMATOR_ALIASES.get(est, est), v.placement, v.is_default, v.reachable,
                       (_rel(root, v.loc.path), v.loc.line))


def _same_variant(want: VariantSpec, got: VariantSpec) -> bool:
    if want.where:
        return want == got
    return dataclasses.replace(got, where=()) == want


def _show_variant(v: VariantSpec) -> str:
    opts = "; ".join(f"called at {x}" if k == "called at" else f"{k}={'|'.join(sorted(x))}" for k, x in v.options)
    flag = {True: " default", None: " default?", False: ""}[v.default]
    at = f" @ {v.where[0]}:{v.where[1]}" if v.where else ""
    return f"{opts or '-'} -> {v.estimator} {v.placement}{flag}{'' if v.reachable else ' unreachable'}{at}"


def compare(report, root: str, ann: Dict[str, Dict[int, LineAnnotations]]) -> List[str]:
    """Every difference between the report and the annotations, one line each (empty: they agree)."""
    problems = [f"error: {e.path}: {e.message}" for e in report.errors]
    # findings: exactly the annotated codes on every line of every file
    got_f: Dict[tuple, set] = {}
    for f in report.findings:
        got_f.setdefault((_rel(root, f.path), f.line), set()).add(f.code)
    want_f = {(p, ln): a.findings for p, lines in ann.items() for ln, a in lines.items() if a.findings}
    for k in sorted(set(got_f) | set(want_f)):
        if got_f.get(k, set()) != want_f.get(k, set()):
            problems.append(f"{k[0]}:{k[1]}: findings expected {sorted(want_f.get(k, ()))}, "
                            f"got {sorted(got_f.get(k, ()))}")
    # terms: estimator and placement, then the per-term annotations
    got_t: Dict[tuple, list] = {}
    for t in report.terms:
        got_t.setdefault((_rel(root, t.loc.path), t.loc.line), []).append(t)
    want_t = {(p, ln): a for p, lines in ann.items() for ln, a in lines.items() if a.terms}
    for k in sorted(set(got_t) | set(want_t)):
        where = f"{k[0]}:{k[1]}"
        terms = got_t.get(k, [])
        a = want_t.get(k)
        got_kinds = Counter((ESTIMATOR_ALIASES.get(t.derivation.estimator, t.derivation.estimator),
                             t.placement.kind) for t in terms)
        want_kinds = Counter(a.terms) if a else Counter()
        if got_kinds != want_kinds:
            problems.append(f"{where}: terms expected {sorted(want_kinds.elements())}, got {sorted(got_kinds.elements())}")
        if a is None:
            continue
        for t in terms:
            problems.extend(_term_problems(root, where, t, a))
    # annotations that describe a term on a line that has none
    for p, lines in ann.items():
        for ln, a in lines.items():
            if not a.terms and (a.confidence or a.detail or a.defaults or a.variants or a.reachable is not None):
                problems.append(f"{p}:{ln}: term annotations (confidence/default/variant/...) without a term:")
    return problems


def _term_problems(root: str, where: str, t, a: LineAnnotations) -> List[str]:
    out = []
    if not a.confidence:
        out.append(f"{where}: confidence not annotated (got {t.confidence})")
    elif a.confidence != t.confidence:
        out.append(f"{where}: confidence expected {a.confidence}, got {t.confidence}")
    if a.detail and a.detail != t.placement.detail:
        out.append(f"{where}: placement detail expected {a.detail!r}, got {t.placement.detail!r}")
    got_d = {(d.key, d.value, _rel(root, d.path), d.line, d.source.lower()) for d in t.defaults}
    if got_d != a.defaults:
        fmt = lambda s: sorted(f"{k}={v} @ {p}:{ln} ({src})" for k, v, p, ln, src in s)  # noqa: E731
        out.append(f"{where}: defaults expected {fmt(a.defaults)}, got {fmt(got_d)}")
    got_v = [got_variant(root, v) for v in t.variants]
    has_options = any(k != "called at" for v in got_v for k, _ in v.options)
    if a.variants or has_options:
        left = list(got_v)
        missing = []
        for w in a.variants:
            hit = next((g for g in left if _same_variant(w, g)), None)
            if hit is None:
                missing.append(w)
            else:
                left.remove(hit)
        for w in missing:
            out.append(f"{where}: variant not found: {_show_variant(w)}")
        for g in left:
            out.append(f"{where}: variant not annotated: {_show_variant(g)}")
    if a.reachable is not None and a.reachable != t.reachable:
        out.append(f"{where}: reachable expected {a.reachable}, got {t.reachable}")
    return out


@pytest.mark.parametrize("name", PACKAGES)
def test_package_matches_its_annotations(name):
    root = os.path.join(PACKAGES_DIR, name)
    ann = read_package(root)
    assert any(a.terms for lines in ann.values() for a in lines.values()), f"{name}: no annotated term"
    problems = compare(lint(name), root, ann)
    assert not problems, f"{name} differs from its annotations:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("name", PACKAGES)
def test_package_is_the_same_without_the_prefilter(name):
    """The prefilter may skip files, never change what the analysis of the package finds."""
    from klaudit.report import json_report

    def snap(rep):
        return ([json_report.term_dict(t) for t in rep.terms], [f.to_dict() for f in rep.findings])

    assert snap(lint(name, True)) == snap(lint(name, False))


def test_packages_cover_the_capabilities():
    """One package per capability of the analyzer (issue 3)."""
    assert len(PACKAGES) >= 12, PACKAGES
