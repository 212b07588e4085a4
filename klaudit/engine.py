"""The pipeline, wired: discover -> parse -> extract -> (link) -> classify -> derive -> rules ->
suppress -> report.  Every per-file failure becomes a one-line error for that file; the run goes on.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from . import model as M
from .classify.definitions import helper_terms
from .classify.terms import function_terms
from .link.configindex import ConfigIndex
from .link.defaults import ProjectDefaults
from .link.linker import Linker
from .config import Config
from .discover import discover
from .extract.context import module_name
from .extract.module import extract
from .extract.summary import ModuleSummary
from .parse import parse_module
from .rules.base import Project
from .rules.registry import BY_CODE, RULES
from .notebook import CellMap, is_notebook, remap_findings
from .source import SourceError, SourceText, decode, read_bytes
from .suppress import Suppression, is_suppressed, scan
from .vocabulary import PREFILTER


@dataclass
class FileResult:
    path: str
    summary: Optional[ModuleSummary] = None
    error: Optional[str] = None
    skipped: bool = False
    suppressions: Dict[int, Suppression] = field(default_factory=dict)
    cells: Optional[CellMap] = None  # notebooks: virtual line -> (cell, line in cell)


def analyze_file(path: str, root: str, max_bytes: int, prefilter: bool = True) -> FileResult:
    """Read, prefilter, parse and extract one file.  Never raises."""
    try:
        data = read_bytes(path, max_bytes)
        if prefilter and not PREFILTER.search(data):
            return FileResult(path, skipped=True)
        if is_notebook(path):
            return analyze_notebook(path, data, root)
        return analyze_source(decode(path, data), root)
    except SourceError as e:
        return FileResult(path, error=str(e))
    except RecursionError:
        return FileResult(path, error="expression nested too deeply to analyse")
    except MemoryError:
        return FileResult(path, error="out of memory while analysing")
    except Exception as e:  # never a traceback for one file
        return FileResult(path, error=f"internal error while analysing: {type(e).__name__}: {str(e)[:200]}")


def analyze_notebook(path: str, data: bytes, root: str) -> FileResult:
    """A notebook's code cells as one virtual module; cells that do not parse are left out and named
    in the file's error, the other cells are still analysed."""
    from . import notebook
    from .parse import SourceSyntaxError

    nb = notebook.load(path, data)
    if nb.language != "python":
        return FileResult(path, skipped=True)
    for _ in range(len(nb.cells.cells) + 1):
        try:
            tree = parse_module(nb.text)
            break
        except SourceSyntaxError as e:
            where = nb.cells.locate(e.line)
            if where is None:
                raise
            nb = notebook.blank_cell(nb, where[0], str(e).replace(f"line {e.line}", f"line {where[1]}", 1))
    else:  # pragma: no cover - every cell already blanked
        raise SourceError("no cell of the notebook parses")
    src = SourceText(path, nb.text, "\n", "utf-8", False)
    ms = extract(src, module_name(path, root), tree=tree)
    return FileResult(path, ms, error="; ".join(nb.errors) or None, suppressions=scan(nb.text), cells=nb.cells)


def analyze_source(src: SourceText, root: str) -> FileResult:
    """Parse and extract decoded source (a file's, or the lines flake8 hands a plugin)."""
    path = src.path
    try:
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


def collect_terms(results: Sequence[FileResult], cfg: Config, configs: Sequence[str] = ()) -> List[M.KLTerm]:
    """Link the per-file summaries, then classify every function's terms and add the helpers' own."""
    summaries = [r.summary for r in results if r.summary is not None]
    linker = Linker(summaries)
    defaults = []
    for ms in summaries:
        defaults.extend(ms.config_defaults)
    linked = []
    for ms in summaries:
        for fs in ms.functions.values():
            try:
                linked.append(linker.link_function(fs))
            except RecursionError:
                continue
    resolver = ProjectDefaults(ConfigIndex(defaults, configs), linker.call_args)
    terms: List[M.KLTerm] = []
    for fs in linked:
        try:
            terms.extend(function_terms(fs, resolver, cfg.budget))
        except RecursionError:
            continue
    helpers = helper_terms(terms)
    by_loc = {(h.loc.path, h.loc.line): h for h in helpers}
    # a helper's own view (parameters named by the helper) yields to the view through its callers,
    # which knows what they pass; it stays only where it places the value more strongly itself
    kept = [t for t in terms if not ((t.loc.path, t.loc.line) in by_loc and M.PRECEDENCE[t.placement.kind] <=
                                     M.PRECEDENCE[by_loc[(t.loc.path, t.loc.line)].placement.kind])]
    have = {(t.loc.path, t.loc.line) for t in kept}
    kept.extend(h for k, h in by_loc.items() if k not in have)
    # one term per place: the same estimator seen from two functions keeps its strongest placement
    best: dict = {}
    for t in kept:
        k = (t.loc.path, t.loc.line, t.loc.col)
        o = best.get(k)
        if o is None or M.PRECEDENCE[t.placement.kind] > M.PRECEDENCE[o.placement.kind]:
            best[k] = t
    return list(best.values())


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
            if rule.code not in selected:
                continue
            for hit in rule.check(t, project):
                codes.append(rule.code)
                if rule.code in cfg.ignored_for(t.loc.path):
                    continue
                loc = hit.loc or (t.placement.loc if t.report_at_use and t.placement.loc else t.loc)
                stmt = t.stmt if loc is t.loc else (loc.line, loc.end_line)
                if is_suppressed(sups.get(loc.path, {}), rule.code, loc.line, stmt):
                    continue
                findings.append(M.Finding(
                    code=rule.code, name=rule.name, severity=rule.severity, path=loc.path, line=loc.line,
                    column=loc.col, end_line=loc.end_line, end_column=loc.end_col, message=hit.message,
                    confidence=t.confidence, fix=hit.fix, term_line=t.loc.line,
                ))
        out_terms.append(_with_codes(t, codes))
    terms[:] = out_terms
    findings = _drop_same_file_call_sites(findings, out_terms)
    findings = _dedupe(findings)
    findings.sort(key=M.Finding.sort_key)
    return findings


def _with_codes(t: M.KLTerm, codes: List[str]) -> M.KLTerm:
    import dataclasses

    return dataclasses.replace(t, codes=tuple(sorted(set(codes))))


def _drop_same_file_call_sites(findings: List[M.Finding], terms: List[M.KLTerm]) -> List[M.Finding]:
    """A helper's finding and its caller's report the same problem; when the helper is in the same
    file the helper's line is the one to fix, and the call site is not reported again."""
    at = {(f.path, f.line, f.code) for f in findings}
    drop = set()
    for t in terms:
        if not t.via or not t.chain:
            continue
        for loc, _ in t.chain:
            if loc.path == t.loc.path:
                for code in t.codes:
                    if (loc.path, loc.line, code) in at and loc.line != t.loc.line:
                        drop.add((t.loc.path, t.loc.line, code))
    return [f for f in findings if (f.path, f.term_line, f.code) not in drop]


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
    terms = collect_terms(results, cfg, configs)
    report.findings = apply_rules(terms, cfg, results)
    report.notebooks = {r.path: r.cells for r in results if r.cells is not None}
    report.findings = remap_findings(report.findings, report.notebooks)
    terms.sort(key=lambda t: (t.loc.path, t.loc.line, t.loc.col))
    report.terms = terms
    report.errors.sort(key=lambda e: (e.path, e.message))
    return report
