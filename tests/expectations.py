"""Read the expectations written inline in fixtures.

``# expect: KL102`` (or ``KL102, KL401``) on a line: those findings, exactly, on that line.
``term: k3 as_loss`` on a line: a KL term whose estimator expression starts there.
Lines without annotations must produce no finding.

Multi-file packages (``fixtures/packages/<capability>/``, read by ``read_package``) add, per term line:

``confidence: medium``                                  the term's confidence (required on every term line)
``placement-detail: "folded into the advantages"``      the placement's detail, exactly (optional)
``default: KEY=VALUE @ PATH:LINE (SOURCE)``             one shipped default the term reports: the config key,
                                                        its value as printed (``'kl'``, ``2``), the file
                                                        (relative to the package root) and line that set it,
                                                        and how, as printed (``YAML``, ``dataclass field of
                                                        Config``, ``argparse default``, ``.get() default``,
                                                        ``parameter default``; case ignored); every reported
                                                        default must be annotated, and only those
``variant: OPTIONS -> EST PLACEMENT [default|default?] [unreachable] [@ PATH:LINE]``
                                                        one option variant of the term: OPTIONS is ``-`` or
                                                        ``;``-separated ``called at PATH:LINE`` and
                                                        ``KEY=V1|V2`` (values compared as a set, quotes
                                                        ignored); ``default`` = the shipped default picks it,
                                                        ``default?`` = unknown, neither = it does not.  A term
                                                        with option variants must list all of them; one whose
                                                        variants are only its call sites may omit them
``reachable: no``                                       the term can never run (optional; ``yes`` also checked)

A comment line starting with ``# ^`` continues the annotations of the nearest line above it that is
not itself such a continuation (for long variant lists).  Several ``term:`` on one line are several
terms; the other annotations of that line then hold for each of them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Set, Tuple

EXPECT = re.compile(r"expect:\s*((?:KL\d{3}[,\s]*)+)")
TERM = re.compile(r"term:\s*([a-z0-9_]+)\s+([a-z_]+)")


@dataclass
class Expectations:
    findings: Dict[int, Set[str]] = field(default_factory=dict)
    terms: Dict[int, Tuple[str, str]] = field(default_factory=dict)


def read(path: str) -> Expectations:
    exp = Expectations()
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if "#" not in line:
                continue
            comment = line[line.index("#"):]
            m = EXPECT.search(comment)
            if m:
                exp.findings[i] = {c for c in re.findall(r"KL\d{3}", m.group(1))}
            t = TERM.search(comment)
            if t:
                exp.terms[i] = (t.group(1), t.group(2))
    return exp


def actual_findings(report) -> Dict[Tuple[str, int], Set[str]]:
    out: Dict[Tuple[str, int], Set[str]] = {}
    for f in report.findings:
        out.setdefault((f.path, f.line), set()).add(f.code)
    return out


# ------------------------------------------------------------------------------------- packages

KEYWORDS = ("expect", "term", "confidence", "placement-detail", "default", "variant", "reachable")
_KEYWORD = re.compile(r"(?<![\w-])(" + "|".join(re.escape(k) for k in KEYWORDS) + r"):")
CONTINUATION = re.compile(r"^\s*#\s*\^")
DEFAULT = re.compile(r"^(?P<key>[^=\s]+)=(?P<value>.+?)\s+@\s+(?P<path>\S+):(?P<line>\d+)\s+\((?P<source>.+)\)$",
                     re.I)
VARIANT_RHS = re.compile(r"^(?P<est>[a-z0-9_]+)\s+(?P<placement>[a-z_]+)(?P<flags>(?:\s+(?:default\??|unreachable))*)"
                         r"(?:\s+@\s+(?P<path>\S+):(?P<line>\d+))?$")


class AnnotationError(ValueError):
    """An annotation that does not parse: a fixture typo must fail loudly, never be skipped."""


@dataclass(frozen=True)
class VariantSpec:
    options: Tuple[Tuple[str, object], ...]  # ("called at", "path:line") or (key, frozenset of values)
    estimator: str
    placement: str
    default: object  # True, None (unknown) or False
    reachable: bool
    where: Tuple[str, int] = ()  # (path, line) of the variant's estimator, when annotated


@dataclass
class LineAnnotations:
    findings: Set[str] = field(default_factory=set)
    terms: List[Tuple[str, str]] = field(default_factory=list)
    confidence: str = ""
    detail: str = ""
    defaults: Set[Tuple[str, str, str, int, str]] = field(default_factory=set)
    variants: List[VariantSpec] = field(default_factory=list)
    reachable: object = None  # None: not annotated


def option_values(text: str) -> frozenset:
    """``'k1' | 'kl'`` or ``k1|kl`` -> {"k1", "kl"}."""
    return frozenset(v.strip().strip("'\"") for v in text.split("|") if v.strip())


def _parse_variant(text: str, where: str) -> VariantSpec:
    if "->" not in text:
        raise AnnotationError(f"{where}: variant without '->': {text!r}")
    lhs, rhs = (s.strip() for s in text.rsplit("->", 1))
    options = []
    if lhs != "-":
        for part in (p.strip() for p in lhs.split(";")):
            if part.startswith("called at "):
                options.append(("called at", part[len("called at "):].strip()))
            elif "=" in part:
                k, v = part.split("=", 1)
                options.append((k.strip(), option_values(v)))
            else:
                raise AnnotationError(f"{where}: variant option {part!r} is neither 'called at P:L' nor KEY=VALUES")
    m = VARIANT_RHS.match(rhs)
    if not m:
        raise AnnotationError(f"{where}: variant result {rhs!r} is not 'EST PLACEMENT [default|default?] "
                              "[unreachable] [@ PATH:LINE]'")
    flags = m.group("flags").split()
    default = True if "default" in flags else (None if "default?" in flags else False)
    at = (m.group("path"), int(m.group("line"))) if m.group("path") else ()
    return VariantSpec(tuple(options), m.group("est"), m.group("placement"), default, "unreachable" not in flags, at)


def parse_comment(comment: str, where: str, into: LineAnnotations) -> None:
    """Add the annotations of one comment (text from its ``#``) to ``into``."""
    marks = list(_KEYWORD.finditer(comment))
    for i, m in enumerate(marks):
        kw = m.group(1)
        end = marks[i + 1].start() if i + 1 < len(marks) else len(comment)
        body = comment[m.end():end].strip()
        if kw == "expect":
            codes = re.findall(r"KL\d{3}", body)
            if not codes or re.sub(r"KL\d{3}|[,\s]", "", body):
                raise AnnotationError(f"{where}: bad expect: {body!r}")
            into.findings |= set(codes)
        elif kw == "term":
            parts = body.split()
            if len(parts) != 2:
                raise AnnotationError(f"{where}: term needs 'ESTIMATOR PLACEMENT': {body!r}")
            into.terms.append((parts[0], parts[1]))
        elif kw == "confidence":
            if body not in ("high", "medium", "low"):
                raise AnnotationError(f"{where}: confidence must be high, medium or low: {body!r}")
            into.confidence = body
        elif kw == "placement-detail":
            if not (len(body) >= 2 and body[0] == body[-1] == '"'):
                raise AnnotationError(f"{where}: placement-detail must be quoted: {body!r}")
            into.detail = body[1:-1]
        elif kw == "default":
            d = DEFAULT.match(body)
            if not d:
                raise AnnotationError(f"{where}: default must be 'KEY=VALUE @ PATH:LINE (SOURCE)': {body!r}")
            into.defaults.add((d.group("key"), d.group("value"), d.group("path"), int(d.group("line")),
                               d.group("source").lower()))
        elif kw == "variant":
            into.variants.append(_parse_variant(body, where))
        elif kw == "reachable":
            if body not in ("yes", "no"):
                raise AnnotationError(f"{where}: reachable must be yes or no: {body!r}")
            into.reachable = body == "yes"


def read_annotations(path: str, rel: str = "") -> Dict[int, LineAnnotations]:
    """line -> annotations, with ``# ^`` continuation lines folded into the line they continue."""
    out: Dict[int, LineAnnotations] = {}
    anchor = 0
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            cont = bool(CONTINUATION.match(line))
            if not cont:
                anchor = i
            if "#" not in line:
                continue
            comment = line[line.index("#"):]
            if cont:
                if anchor == 0:
                    raise AnnotationError(f"{rel or path}:{i}: '# ^' continuation with no line above")
                comment = comment.split("^", 1)[1]
            if not _KEYWORD.search(comment):
                continue
            target = anchor if cont else i
            parse_comment(comment, f"{rel or path}:{i}", out.setdefault(target, LineAnnotations()))
    return out


def read_package(root: str) -> Dict[str, Dict[int, LineAnnotations]]:
    """relative path -> line -> annotations, for every Python file under ``root``."""
    import os

    out: Dict[str, Dict[int, LineAnnotations]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        for f in sorted(filenames):
            if f.endswith(".py"):
                full = os.path.join(dirpath, f)
                rel = os.path.relpath(full, root).replace(os.sep, "/")
                ann = read_annotations(full, rel)
                if ann:
                    out[rel] = ann
    return out
