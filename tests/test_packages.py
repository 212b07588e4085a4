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
    """``path`` relative to the package root (a relative path is taken as relative to the root, as the
    CLI prints it when run there)."""
    full = path if os.path.isabs(path) else os.path.join(root, path)
    return os.path.relpath(full, root).replace(os.sep, "/")


def _where(root: str, text: str) -> str:
    """``path:line`` (as the analyzer prints a call site) relative to the package root."""
    p, _, line = text.rpartition(":")
    return f"{_rel(root, p)}:{line}"


@dataclasses.dataclass(frozen=True)
class TermFacts:
    """What the checks compare of one term, whether it comes from the report or from the JSON inventory."""

    estimator: str
    placement: str
    confidence: str
    detail: str
    defaults: frozenset  # of (key, value, path, line, source in lower case)
    variants: tuple  # of VariantSpec
    reachable: bool


def facts_of_term(root: str, t) -> TermFacts:
    variants = []
    for v in t.variants:
        opts = tuple(("called at", _where(root, vals)) if o == "called at" else (o, option_values(vals))
                     for o, vals in v.options)
        est = v.derivation.estimator
        variants.append(VariantSpec(opts, ESTIMATOR_ALIASES.get(est, est), v.placement, v.is_default, v.reachable,
                                    (_rel(root, v.loc.path), v.loc.line)))
    est = t.derivation.estimator
    return TermFacts(ESTIMATOR_ALIASES.get(est, est), t.placement.kind, t.confidence, t.placement.detail,
                     frozenset((d.key, d.value, _rel(root, d.path), d.line, d.source.lower()) for d in t.defaults),
                     tuple(variants), t.reachable)


def facts_of_json(root: str, d: dict) -> TermFacts:
    """The same facts read back from ``klaudit inventory --output-format json`` (paths relative to ``root``)."""
    variants = tuple(
        VariantSpec(tuple(("called at", _where(root, o["values"])) if o["option"] == "called at"
                          else (o["option"], option_values(o["values"])) for o in v["options"]),
                    v["estimator"], v["placement"], v["default"], v["reachable"], (_rel(root, v["path"]), v["line"]))
        for v in d["variants"])
    return TermFacts(d["estimator"], d["placement"], d["confidence"], d["placement_detail"],
                     frozenset((s["key"], s["value"], _rel(root, s["path"]), s["line"], s["source"].lower())
                               for s in d["defaults"]),
                     variants, d["reachable"])


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
    # a finding carries the confidence of its term (annotated on the term's line)
    for f in report.findings:
        a = ann.get(_rel(root, f.path), {}).get(f.term_line)
        if a is not None and a.confidence and f.confidence != a.confidence:
            problems.append(f"{_rel(root, f.path)}:{f.line}: {f.code} reported with confidence {f.confidence}, "
                            f"its term (line {f.term_line}) is annotated {a.confidence}")
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
            problems.extend(term_problems(where, facts_of_term(root, t), a))
    # annotations that describe a term on a line that has none
    for p, lines in ann.items():
        for ln, a in lines.items():
            if not a.terms and (a.confidence or a.detail or a.defaults or a.variants or a.reachable is not None):
                problems.append(f"{p}:{ln}: term annotations (confidence/default/variant/...) without a term:")
    return problems


def term_problems(where: str, t: TermFacts, a: LineAnnotations) -> List[str]:
    """How one term differs from the annotations of its line."""
    out = []
    if not a.confidence:
        out.append(f"{where}: confidence not annotated (got {t.confidence})")
    elif a.confidence != t.confidence:
        out.append(f"{where}: confidence expected {a.confidence}, got {t.confidence}")
    if a.detail and a.detail != t.detail:
        out.append(f"{where}: placement detail expected {a.detail!r}, got {t.detail!r}")
    if set(t.defaults) != a.defaults:
        def fmt(s):
            return sorted(f"{k}={v} @ {p}:{ln} ({src})" for k, v, p, ln, src in s)
        out.append(f"{where}: defaults expected {fmt(a.defaults)}, got {fmt(t.defaults)}")
    has_options = any(k != "called at" for v in t.variants for k, _ in v.options)
    if a.variants or has_options:
        left = list(t.variants)
        for w in a.variants:
            hit = next((g for g in left if _same_variant(w, g)), None)
            if hit is None:
                out.append(f"{where}: variant not found: {_show_variant(w)}")
            else:
                left.remove(hit)
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


# ----------------------------------------------------------------------- the annotations can fail

MUTATED = "option_yaml_default"  # has findings, helpers, option variants, YAML defaults and switches


def _mutations():
    """(what, mutate(annotations) -> None): each breaks one expectation of MUTATED's annotations."""
    def first(ann, pred):
        for p in sorted(ann):
            for ln in sorted(ann[p]):
                if pred(ann[p][ln]):
                    return ann[p][ln]
        raise AssertionError("no annotation to mutate")

    def confidence(ann):
        a = first(ann, lambda a: a.terms)
        a.confidence = "high" if a.confidence != "high" else "low"

    def placement(ann):
        a = first(ann, lambda a: a.terms)
        est, _ = a.terms[0]
        a.terms[0] = (est, "metric")

    def finding(ann):
        first(ann, lambda a: a.findings).findings.clear()

    def extra_finding(ann):
        first(ann, lambda a: a.terms and not a.findings).findings.add("KL101")

    def default_line(ann):
        a = first(ann, lambda a: a.defaults)
        k, v, p, ln, src = sorted(a.defaults)[0]
        a.defaults.discard((k, v, p, ln, src))
        a.defaults.add((k, v, p, ln + 1, src))

    def default_dropped(ann):
        a = first(ann, lambda a: a.defaults)
        a.defaults.discard(sorted(a.defaults)[0])

    def variant_default(ann):
        a = first(ann, lambda a: a.variants)
        v = a.variants[0]
        a.variants[0] = dataclasses.replace(v, default=not v.default)

    def variant_values(ann):
        a = first(ann, lambda a: any(k != "called at" for v in a.variants for k, _ in v.options))
        v = next(v for v in a.variants if any(k != "called at" for k, _ in v.options))
        opts = tuple((k, frozenset({"k9"}) if k != "called at" else x) for k, x in v.options)
        a.variants[a.variants.index(v)] = dataclasses.replace(v, options=opts)

    def variant_dropped(ann):
        first(ann, lambda a: any(k != "called at" for v in a.variants for k, _ in v.options)).variants.pop()

    def detail(ann):
        first(ann, lambda a: a.terms).detail = "logged"

    def term_dropped(ann):
        a = first(ann, lambda a: a.terms and not a.findings)
        a.terms.clear()
        a.confidence, a.defaults, a.variants = "", set(), []

    return [(f.__name__, f) for f in (confidence, placement, finding, extra_finding, default_line, default_dropped,
                                      variant_default, variant_values, variant_dropped, detail, term_dropped)]


@pytest.mark.parametrize("what,mutate", _mutations(), ids=[w for w, _ in _mutations()])
def test_a_wrong_annotation_fails(what, mutate):
    root = os.path.join(PACKAGES_DIR, MUTATED)
    ann = read_package(root)
    assert not compare(lint(MUTATED), root, ann)
    mutate(ann)
    assert compare(lint(MUTATED), root, ann), f"mutation {what!r} went unnoticed"


@pytest.mark.parametrize("text", [
    "x = 1  # expect: KL1O2",
    "x = 1  # term: k3",
    "x = 1  # term: k3 as_loss  confidence: sure",
    "x = 1  # term: k3 as_loss  placement-detail: logged",
    "x = 1  # term: k3 as_loss  default: kl_type='k3' @ conf.yaml",
    "x = 1  # term: k3 as_loss  variant: kl_type=k3 k3 as_loss",
    "x = 1  # term: k3 as_loss  variant: kl_type=k3 -> k3 as_loss sometimes",
    "# ^ term: k3 as_loss",
])
def test_a_malformed_annotation_is_an_error(tmp_path, text):
    from expectations import AnnotationError, read_annotations

    f = tmp_path / "m.py"
    f.write_text(text + "\n")
    with pytest.raises(AnnotationError):
        read_annotations(str(f))


def test_continuation_lines_attach_to_the_line_above(tmp_path):
    from expectations import read_annotations

    f = tmp_path / "m.py"
    f.write_text("kl = a - b  # term: k1 in_reward  confidence: medium\n"
                 "# ^ variant: kind=k1|kl; called at x.py:3 -> k1 in_reward default @ y.py:7\n"
                 "    # ^ default: kind='kl' @ conf/a.yaml:2 (YAML)\n"
                 "y = 2  # expect: KL101\n")
    ann = read_annotations(str(f))
    assert sorted(ann) == [1, 4]
    a = ann[1]
    assert a.terms == [("k1", "in_reward")] and a.confidence == "medium"
    assert a.defaults == {("kind", "'kl'", "conf/a.yaml", 2, "yaml")}
    (v,) = a.variants
    assert v.options == (("kind", frozenset({"k1", "kl"})), ("called at", "x.py:3"))
    assert (v.estimator, v.placement, v.default, v.reachable, v.where) == ("k1", "in_reward", True, True, ("y.py", 7))
    assert ann[4].findings == {"KL101"}


# --------------------------------------------------------------- the inventory shows what the tests check

INVENTORY = "estimator_stack"  # an integer option, a dataclass default, helpers and their call sites


def _inventory(tmp_path, name, fmt):
    import shutil
    import subprocess
    import sys

    dst = tmp_path / name
    if not dst.exists():
        shutil.copytree(os.path.join(PACKAGES_DIR, name), dst)
    p = subprocess.run([sys.executable, "-m", "klaudit", "inventory", ".", "--output-format", fmt, "--no-cache"],
                       capture_output=True, text=True, cwd=dst)
    assert p.returncode == 0, p.stderr
    return str(dst), p.stdout


def test_json_inventory_shows_variants_confidence_and_defaults(tmp_path):
    """``klaudit inventory --output-format json`` carries, per term, the variants with their options, the
    confidence, and each default's key, value, file, line and source: exactly what the annotations say."""
    import json

    root, out = _inventory(tmp_path, INVENTORY, "json")
    doc = json.loads(out)
    assert not doc["errors"]
    ann = read_package(root)
    problems, seen = [], set()
    for d in doc["terms"]:
        key = (_rel(root, d["path"]), d["line"])
        seen.add(key)
        a = ann.get(key[0], {}).get(key[1])
        if a is None or not a.terms:
            problems.append(f"{key[0]}:{key[1]}: not annotated")
            continue
        facts = facts_of_json(root, d)
        if (facts.estimator, facts.placement) not in a.terms:
            problems.append(f"{key[0]}:{key[1]}: {facts.estimator} {facts.placement} not in {a.terms}")
        problems.extend(term_problems(f"{key[0]}:{key[1]}", facts, a))
    want = {(p, ln) for p, lines in ann.items() for ln, a in lines.items() if a.terms}
    problems.extend(f"{p}:{ln}: annotated, not in the inventory" for p, ln in sorted(want - seen))
    assert not problems, "\n".join(problems)
    with_options = [d for d in doc["terms"] if any(o["option"] != "called at" for v in d["variants"]
                                                   for o in v["options"])]
    assert with_options and all(d["defaults"] for d in with_options)


def _table_rows(text: str, path: str, line: int) -> List[str]:
    """The row of the term at path:line and its indented option/default rows."""
    lines = text.splitlines()
    head = f"./{path}:{line} "
    i = next(i for i, ln in enumerate(lines) if ln.startswith(head))
    rows = [lines[i]]
    for ln in lines[i + 1:]:
        if not ln.startswith("  "):
            break
        rows.append(ln)
    return rows


def test_text_inventory_shows_variants_confidence_and_defaults(tmp_path):
    """The text report card: under each call-site term, one ``option KEY=VALUES`` row per variant with
    where it is written, its estimator, placement and a ``default`` mark for the one the shipped default
    picks, then ``default KEY=VALUE`` with the file and line that set it and how; the term's row
    carries its confidence."""
    import json

    root, out = _inventory(tmp_path, INVENTORY, "json")
    _, text = _inventory(tmp_path, INVENTORY, "text")
    doc = json.loads(out)
    checked = 0
    for d in doc["terms"]:
        if any(o["option"] == "called at" for v in d["variants"] for o in v["options"]):
            continue  # a helper's own term: its rows name the call sites first
        rows = _table_rows(text, _rel(root, d["path"]), d["line"])
        assert f" {d['confidence']} " in rows[0], rows[0]
        for v in d["variants"]:
            opts = "; ".join(f"{o['option']}={o['values']}" for o in v["options"])
            row = next((r for r in rows if r.startswith(f"  option {opts} ")), None)
            assert row is not None, (opts, rows)
            assert f"./{_rel(root, v['path'])}:{v['line']} " in row and f" {v['estimator']} " in row, row
            assert f" {v['placement']} " in row and ((" default " in row) == bool(v["default"])), row
        for s in d["defaults"]:
            row = next((r for r in rows if r.startswith(f"  default {s['key']}={s['value']} ")), None)
            assert row is not None, (s, rows)
            assert f"./{_rel(root, s['path'])}:{s['line']} " in row and s["source"] in row, row
        checked += bool(d["variants"])
    assert checked
