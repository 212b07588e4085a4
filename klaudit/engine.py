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
from .link.linker import Linker, relevant_functions
from .config import Config
from .discover import discover
from .extract.context import module_name
from .extract.summary import ModuleSummary
from .parse import parse_module
from .rules.base import Project
from .rules.registry import RULES
from .notebook import CellMap, is_notebook, remap_findings
from .source import SourceError, SourceText, decode, read_bytes
from .suppress import Suppression, is_suppressed, scan
from .vocabulary import mentions_kl_words


@dataclass
class FileResult:
    path: str
    summary: Optional[ModuleSummary] = None
    error: Optional[str] = None
    skipped: bool = False
    suppressions: Dict[int, Suppression] = field(default_factory=dict)
    cells: Optional[CellMap] = None  # notebooks: virtual line -> (cell, line in cell)
    content_key: str = ""  # the cache key of the file's bytes (set by the driver)
    refs: Optional[frozenset] = None  # modules this file's KL-relevant code calls into (prefilter stage two)

    def referenced(self) -> frozenset:
        if self.refs is None:
            from . import prefilter as PF

            self.refs = frozenset(PF.referenced_modules([self.summary])) if self.summary is not None else frozenset()
        return self.refs


def analyze_file(path: str, root: str, max_bytes: int, prefilter: bool = True) -> FileResult:
    """Read, prefilter, parse and extract one file.  Never raises."""
    try:
        data = read_bytes(path, max_bytes)
        if prefilter and not mentions_kl_words(data):
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
    from .extract.module import extract

    ms = extract(src, module_name(path, root), tree=tree)
    return FileResult(path, ms, error="; ".join(nb.errors) or None, suppressions=scan(nb.text), cells=nb.cells)


def analyze_source(src: SourceText, root: str) -> FileResult:
    """Parse and extract decoded source (a file's, or the lines flake8 hands a plugin)."""
    from .extract.module import extract  # libcst is imported only when a file needs parsing

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


_TERMS_STATE: tuple = ()


class _RecordingResolver:
    """Answers like the project's resolver and remembers what was asked: a function's terms depend on
    the rest of the project only through its linked summary and these answers."""

    def __init__(self, inner):
        self.inner = inner
        self.asked: list = []

    def default(self, key, fs):
        ans = self.inner.default(key, fs)
        self.asked.append((key, ans))
        return ans


def _terms_of(i: int):
    linked, resolver, budget = _TERMS_STATE
    rec = _RecordingResolver(resolver)
    try:
        return function_terms(linked[i], rec, budget), rec.asked
    except RecursionError:
        return [], rec.asked


def _terms_in_workers(linked, resolver, budget, jobs: int):
    """Classify the linked functions, in forked workers that share the linker's state when there are
    enough of them (results come back in order: deterministic)."""
    global _TERMS_STATE
    import multiprocessing

    _TERMS_STATE = (linked, resolver, budget)
    try:
        if jobs > 1 and len(linked) >= 32 and "fork" in multiprocessing.get_all_start_methods():
            from concurrent.futures import ProcessPoolExecutor

            try:
                with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("fork")) as ex:
                    return list(ex.map(_terms_of, range(len(linked)), chunksize=max(1, len(linked) // (jobs * 6))))
            except Exception:  # a broken pool: do it here
                pass
        return [_terms_of(i) for i in range(len(linked))]
    finally:
        _TERMS_STATE = ()


def _terms_key(fs, budget: float, memo: dict) -> Optional[str]:
    from .cache import key as ckey
    from .cache import stable_digest

    try:
        return ckey("terms", stable_digest(fs, memo), budget)
    except RecursionError:
        return None


def _cached_terms(linked, resolver, budget: float, jobs: int, cache) -> List[List[M.KLTerm]]:
    """Each linked function's terms, from the cache when its linked summary is unchanged and the
    project still answers its option-default questions the same way; the rest computed in workers."""
    out: List[Optional[List[M.KLTerm]]] = [None] * len(linked)
    keys: List[Optional[str]] = [None] * len(linked)
    todo: List[int] = []
    memo: dict = {}
    for i, fs in enumerate(linked):
        if cache is not None:
            keys[i] = _terms_key(fs, budget, memo)
            hit = cache.get_pickle("terms", keys[i]) if keys[i] else None
            if isinstance(hit, tuple) and len(hit) == 2:
                asked, ts = hit
                try:
                    same = all(resolver.default(k, fs) == ans for k, ans in asked)
                except Exception:
                    same = False
                if same:
                    out[i] = ts
                    continue
        todo.append(i)
    computed = _terms_in_workers([linked[i] for i in todo], resolver, budget, jobs)
    for i, (ts, asked) in zip(todo, computed):
        out[i] = ts
        if cache is not None and keys[i]:
            cache.put_pickle("terms", keys[i], (asked, ts))
    return [ts or [] for ts in out]


def collect_terms(results: Sequence[FileResult], cfg: Config, configs: Sequence[str] = (),
                  jobs: int = 1, cache=None) -> List[M.KLTerm]:
    """Link the per-file summaries, then classify every function's terms and add the helpers' own."""
    summaries = [r.summary for r in results if r.summary is not None]
    linker = Linker(summaries)
    defaults = []
    for ms in summaries:
        defaults.extend(ms.config_defaults)
    relevant = relevant_functions(linker)
    linked = []
    for ms in summaries:
        for fs in ms.functions.values():
            if fs.qualname not in relevant:
                continue
            try:
                linked.append(linker.link_function(fs))
            except RecursionError:
                continue
    resolver = ProjectDefaults(ConfigIndex(defaults, configs), linker.call_args)
    terms: List[M.KLTerm] = []
    for chunk in _cached_terms(linked, resolver, cfg.budget, jobs, cache):
        terms.extend(chunk)
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
    fixer = _fixer(cfg)
    for t in terms:
        codes = []
        if t.variants and all(v.is_default is False for v in t.variants):
            out_terms.append(t)
            continue
        first = len(findings)
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
        if fixer is not None:
            findings[first:] = fixer.attach(t, findings[first:])
        out_terms.append(_with_codes(t, codes))
    terms[:] = out_terms
    findings = _drop_same_file_call_sites(findings, out_terms)
    findings = _dedupe(findings)
    findings.sort(key=M.Finding.sort_key)
    return findings


def _fixer(cfg: Config):
    """The fix builder when fixes are requested (it loads klaudit.fix, never on the plain lint path)."""
    if not getattr(cfg, "fixes", False):
        return None
    from .fix import Fixer

    return Fixer(cfg)


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


@dataclass(frozen=True)
class _Job:
    path: str
    root: str
    max_bytes: int
    budget: float


BUDGET_ERROR = "analysis exceeded the per-file budget of {:g}s (raise `file-budget`)"
DIED_ERROR = "the worker process analysing this file died (a crash or out of memory)"


def _analyze_job(job: _Job) -> FileResult:
    """One file, in a worker: the per-file wall-clock budget is enforced here.  The budget's
    exception can surface anywhere in the analysis, where a handler may already have turned it into
    another error: that the timer fired is what decides."""
    from .derive.budget import Budget, BudgetExceeded

    class FileBudget(Budget):
        fired = False

        def _handler(self, signum, frame):
            self.fired = True
            raise BudgetExceeded()

    budget = FileBudget(job.budget)
    try:
        with budget:
            r = analyze_file(job.path, job.root, job.max_bytes, prefilter=False)
    except BudgetExceeded:
        budget.fired = True
    if budget.fired:
        return FileResult(job.path, error=BUDGET_ERROR.format(job.budget))
    r.referenced()  # in the worker, and cached with the result
    return r


def _worker_died(job: _Job) -> FileResult:
    return FileResult(job.path, error=DIED_ERROR)


def _transient(error: Optional[str]) -> bool:
    """Errors not to cache: they depend on the machine, the load or the budget, not on the file."""
    return bool(error) and (error == DIED_ERROR or "per-file budget" in error)


def _read_for_stage(path: str, max_bytes: int):
    try:
        return read_bytes(path, max_bytes), None
    except SourceError as e:
        return None, str(e)


def read_files(files: Sequence[str], cfg: Config):
    """(path -> bytes, path -> content key, path -> read error)."""
    from .cache import key as ckey

    datas: Dict[str, bytes] = {}
    keys: Dict[str, str] = {}
    errs: Dict[str, str] = {}
    for p in files:
        data, err = _read_for_stage(p, cfg.max_file_size)
        if err is not None:
            errs[p] = err
            continue
        datas[p] = data
        keys[p] = ckey("file", p, module_name(p, cfg.root), cfg.budget, data)
    return datas, keys, errs


def analyze_files(files: Sequence[str], cfg: Config, prefilter: bool, jobs: int, cache,
                  read=None) -> List[FileResult]:
    """Stage one: every candidate file; stage two: the files they call into.  Cached results are
    reused by content hash."""
    from . import prefilter as PF
    from .parallel import map_items

    datas, keys, errs = read if read is not None else read_files(files, cfg)
    results: Dict[str, FileResult] = {p: FileResult(p, error=e) for p, e in errs.items()}
    deferred: List[str] = []
    todo: List[str] = []
    for p in files:
        if p not in datas:
            continue
        data = datas[p]
        k = keys[p]
        if prefilter and not PF.candidate(data):
            datas[p] = data
            deferred.append(p)
            continue
        hit = cache.get_pickle("file", k) if cache is not None else None
        if isinstance(hit, FileResult):
            results[p] = hit
        else:
            todo.append(p)

    def run_batch(paths: List[str]) -> None:
        jobs_list = [_Job(p, cfg.root, cfg.max_file_size, cfg.file_budget) for p in paths]
        for p, r in zip(paths, map_items(_analyze_job, jobs_list, jobs, _worker_died)):
            results[p] = r
            if cache is not None and not _transient(r.error):
                cache.put_pickle("file", keys[p], r)

    run_batch(todo)
    # stage two: what the analysed files call into (a bounded closure)
    seen_mods: set = set()
    for _ in range(3):
        if not deferred:
            break
        mods = set().union(*(r.referenced() for r in results.values() if r.summary is not None)) - seen_mods
        seen_mods |= mods
        module_of = {p: module_name(p, cfg.root) for p in deferred}
        wanted = set(PF.files_for_modules(mods, module_of))
        if not wanted:
            break
        batch = []
        for p in deferred:
            if p not in wanted:
                continue
            hit = cache.get_pickle("file", keys[p]) if cache is not None else None
            if isinstance(hit, FileResult):
                results[p] = hit
            else:
                batch.append(p)
        deferred = [p for p in deferred if p not in wanted]
        run_batch(batch)
    for p in deferred:
        results[p] = FileResult(p, skipped=True)
    for p, r in results.items():
        if p in keys:
            r.content_key = keys[p]
    return [results[p] for p in files if p in results]


def run(paths: Sequence[str], cfg: Config, prefilter: bool = True, jobs: Optional[int] = None,
        use_cache: bool = False) -> M.Report:
    from .parallel import default_jobs

    files, configs, errors = discover(paths, cfg.exclude, cfg.root)
    report = M.Report(errors=list(errors))
    cache = None
    if use_cache:
        from .cache import Cache
        from .derive import coefficient

        cache = Cache(cfg.root, cfg.key())
        coefficient.set_disk_cache(cache if cache.ok else None)
    read = read_files(files, cfg)
    run_key = None
    if cache is not None:
        run_key = _run_key(files, read[1], read[2], configs, cfg, prefilter)
        hit = cache.get_pickle("run", run_key)
        if isinstance(hit, M.Report):
            hit.errors = sorted(set(hit.errors) | set(errors), key=lambda e: (e.path, e.message))
            return hit
    results = analyze_files(files, cfg, prefilter, jobs if jobs is not None else default_jobs(), cache, read)
    report.files = len(files)
    for r in results:
        if r.error is not None:
            report.errors.append(M.FileError(r.path, r.error))
    terms = collect_terms(results, cfg, configs, jobs if jobs is not None else default_jobs(), cache)
    report.findings = apply_rules(terms, cfg, results)
    report.notebooks = {r.path: r.cells for r in results if r.cells is not None}
    report.findings = remap_findings(report.findings, report.notebooks)
    terms.sort(key=lambda t: (t.loc.path, t.loc.line, t.loc.col))
    report.terms = terms
    report.errors.sort(key=lambda e: (e.path, e.message))
    if cache is not None and run_key is not None and not any(_transient(e.message) for e in report.errors):
        cache.put_pickle("run", run_key, report)
    return report


def _run_key(files, keys, errs, configs: Sequence[str], cfg: Config, prefilter: bool) -> str:
    """Everything a run's report depends on: each file's path and bytes (through its content key),
    the YAML files, the configuration."""
    import hashlib

    from .cache import key as ckey

    h = hashlib.sha256()
    for p in files:
        h.update(p.encode("utf-8", "surrogatepass"))
        h.update((keys.get(p) or ("E" + errs.get(p, ""))).encode("utf-8", "surrogatepass"))
    for c in configs:
        try:
            st = os.stat(c)
            h.update(f"{c}|{st.st_size}|{st.st_mtime_ns}".encode("utf-8", "surrogatepass"))
        except OSError:
            h.update(c.encode("utf-8", "surrogatepass"))
    return ckey("run", h.hexdigest(), cfg.key(), prefilter, cfg.file_budget)
