"""The pipeline, wired: discover -> parse -> extract -> (link) -> classify -> derive -> rules ->
suppress -> report.  Every per-file failure becomes a one-line error for that file; the run goes on.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from . import model as M
from .classify.terms import LocalDefaults, function_terms
from .config import Config
from .discover import discover
from .extract.context import module_name
from .extract.module import extract
from .extract.summary import ModuleSummary
from .parse import parse_module
from .rules.base import Project
from .rules.registry import BY_CODE, RULES
from .source import SourceError, decode, read_bytes
from .suppress import Suppression, is_suppressed, scan
from .vocabulary import PREFILTER


@dataclass
class FileResult:
    path: str
    summary: Optional[ModuleSummary] = None
    error: Optional[str] = None
    skipped: bool = False
    suppressions: Dict[int, Suppression] = field(default_factory=dict)


def analyze_file(path: str, root: str, max_bytes: int, prefilter: bool = True) -> FileResult:
    """Read, prefilter, parse and extract one file.  Never raises."""
    try:
        data = read_bytes(path, max_bytes)
        if prefilter and not PREFILTER.search(data):
            return FileResult(path, skipped=True)
        src = decode(path, data)
        tree = parse_module(src.text)
        ms = extract(src, module_name(path, root), is_package=os.path.basename(path) == "__init__.py", tree=tree)
        return FileResult(path, ms, suppressions=scan(src.text))
    except SourceError as e:
        return FileResult(path, error=str(e))
    except RecursionError:
        return FileResult(path, error="expression nested too deeply to analyse")
    except MemoryError:
        return FileResult(path, error="out of memory while analysing")
    except Exception as e:  # never a traceback for one file
        return FileResult(path, error=f"internal error while analysing: {type(e).__name__}: {str(e)[:200]}")


def collect_terms(results: Sequence[FileResult], cfg: Config) -> List[M.KLTerm]:
    resolver = LocalDefaults()
    terms: List[M.KLTerm] = []
    for r in results:
        if r.summary is None:
            continue
        for fs in r.summary.functions.values():
            try:
                terms.extend(function_terms(fs, resolver, cfg.budget))
            except RecursionError:
                continue
    return terms


def apply_rules(terms: List[M.KLTerm], cfg: Config, results: Sequence[FileResult]) -> List[M.Finding]:
    selected = cfg.selected()
    project = Project(terms)
    sups = {r.path: r.suppressions for r in results}
    findings: List[M.Finding] = []
    out_terms = []
    for t in terms:
        codes = []
        if t.variants and all(v.is_default is False for v in t.variants):
            out_terms.append(t)
            continue
        for rule in RULES:
            for hit in rule.check(t, project):
                codes.append(rule.code)
                if rule.code not in selected:
                    continue
                if rule.code in cfg.ignored_for(t.loc.path):
                    continue
                loc = hit.loc or t.loc
                if is_suppressed(sups.get(loc.path, {}), rule.code, loc.line, t.stmt):
                    continue
                findings.append(M.Finding(
                    code=rule.code, name=rule.name, severity=rule.severity, path=loc.path, line=loc.line,
                    column=loc.col, end_line=loc.end_line, end_column=loc.end_col, message=hit.message,
                    confidence=t.confidence, fix=hit.fix, term_line=t.loc.line,
                ))
        out_terms.append(_with_codes(t, codes))
    terms[:] = out_terms
    findings = _dedupe(findings)
    findings.sort(key=M.Finding.sort_key)
    return findings


def _with_codes(t: M.KLTerm, codes: List[str]) -> M.KLTerm:
    import dataclasses

    return dataclasses.replace(t, codes=tuple(sorted(set(codes))))


def _dedupe(findings: List[M.Finding]) -> List[M.Finding]:
    seen = set()
    out = []
    for f in findings:
        k = (f.path, f.line, f.column, f.code)
        if k in seen:
            continue
        seen.add(k)
        out.append(f)
    return out


def run(paths: Sequence[str], cfg: Config, prefilter: bool = True) -> M.Report:
    files, configs, errors = discover(paths, cfg.exclude, cfg.root)
    report = M.Report(errors=list(errors))
    results = [analyze_file(p, cfg.root, cfg.max_file_size, prefilter) for p in files]
    report.files = len(files)
    for r in results:
        if r.error is not None:
            report.errors.append(M.FileError(r.path, r.error))
    terms = collect_terms(results, cfg)
    report.findings = apply_rules(terms, cfg, results)
    terms.sort(key=lambda t: (t.loc.path, t.loc.line, t.loc.col))
    report.terms = terms
    report.errors.sort(key=lambda e: (e.path, e.message))
    return report
