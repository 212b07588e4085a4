#!/usr/bin/env python3
"""Run klaudit over the standard library of every installed Python and print the robustness figures.

usage: python benchmarks/stdlib_sweep.py [LIBDIR...] [--jobs N] [--prefilter] [--versions 2.7,3.12]
                                         [--show-errors] [--timeout S]

Without LIBDIR, every ``~/.pyenv/versions/*/lib/pythonX.Y`` (``$PYENV_ROOT`` honoured) is swept, test
data included (files with bad encodings, deliberately broken syntax, Python 2 syntax).  Each library
is linted by the real command line, in a fresh process:

    python -m klaudit check LIBDIR --no-cache --output-format json --no-prefilter --config <sweep.toml>

``--no-prefilter`` makes every file go through decoding and parsing (the default prefilter would skip
most of the library unread); ``--prefilter`` sweeps the default mode instead.  The sweep's
configuration excludes only ``site-packages`` (third-party code) and ``__pycache__``; the default
exclusions (``venv``, ``build``, ...) would hide parts of the library.

Printed per version and in total: files seen (what discovery lists), parsed (seen minus files with an
error), parse errors reported (``path: error: ...`` lines, by reason), tracebacks (a ``Traceback`` in
the output, output that is not JSON, an exit code other than 0/1/2, or a timeout), findings, seconds.
Also checked: every error names a reason and no file has two errors; ``internal error`` lines are
swallowed exceptions of the analyzer and are counted as bugs.  Exit status 1 when tracebacks,
findings, internal errors or duplicate errors are not all zero.
"""
from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

SWEEP_TOML = '[tool.klaudit]\nexclude = ["site-packages", "__pycache__"]\n'


def library_dirs(versions=None):
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    out = []
    for d in sorted(glob.glob(os.path.join(root, "versions", "*", "lib", "python*"))):
        if not os.path.isdir(d) or not re.fullmatch(r"python\d+\.\d+t?", os.path.basename(d)):
            continue
        ver = os.path.basename(d)[len("python"):]
        if versions and ver not in versions:
            continue
        out.append((ver, d))
    out.sort(key=lambda vd: tuple(int(x) for x in re.findall(r"\d+", vd[0])))
    return out


def reason_kind(msg: str) -> str:
    m = msg.lower()
    if m.startswith("syntax error"):
        return "syntax"
    if m.startswith(("cannot decode", "bad encoding")):
        return "encoding"
    if m.startswith("binary file"):
        return "binary"
    if "nested too deeply" in m:
        return "too deep"
    if m.startswith("file too large"):
        return "too large"
    if m.startswith("internal error"):
        return "INTERNAL"
    if "per-file budget" in m:
        return "budget"
    if "worker process" in m:
        return "worker died"
    if m.startswith("cannot parse"):
        return "parser"
    return "other"


def sweep_one(libdir: str, toml: str, jobs, prefilter: bool, timeout: float) -> dict:
    from klaudit.config import load
    from klaudit.discover import discover

    cfg = load([libdir], toml)
    files, _, discover_errors = discover([libdir], cfg.exclude, cfg.root)
    cmd = [sys.executable, "-m", "klaudit", "check", libdir, "--no-cache", "--output-format", "json",
           "--config", toml]
    if not prefilter:
        cmd.append("--no-prefilter")
    if jobs:
        cmd += ["--jobs", str(jobs)]
    t0 = time.perf_counter()
    row = {"dir": libdir, "seen": len(files), "tracebacks": 0, "findings": 0, "errors": 0, "internal": 0,
           "duplicates": 0, "unnamed": 0, "reasons": collections.Counter(), "problems": [], "error_list": []}
    try:
        p = subprocess.run(cmd, cwd=os.path.dirname(toml), capture_output=True, timeout=timeout)
        out, err, rc = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"), p.returncode
    except subprocess.TimeoutExpired:
        out, err, rc = "", "", None
        row["problems"].append(f"timed out after {timeout:g}s")
    row["seconds"] = time.perf_counter() - t0
    row["rc"] = rc
    if rc is None:
        row["tracebacks"] += 1
    elif "Traceback" in err or "Traceback" in out or rc not in (0, 1, 2):
        row["tracebacks"] += 1
        row["problems"].append(f"exit {rc}; stderr tail:\n{err[-3000:]}")
    doc = None
    if rc is not None:
        try:
            doc = json.loads(out)
        except ValueError:
            row["tracebacks"] += 0 if row["problems"] else 1
            row["problems"].append(f"output is not JSON (exit {rc}): {out[:300]!r} {err[-2000:]!r}")
    if doc is not None:
        row["findings"] = len(doc.get("findings", []))
        for f in doc.get("findings", []):
            row["problems"].append(f"FINDING {f['path']}:{f['line']}:{f['column']} {f['code']} {f['message']}")
        per_path = collections.Counter()
        for e in doc.get("errors", []):
            per_path[e["path"]] += 1
            kind = reason_kind(e.get("message", ""))
            row["reasons"][kind] += 1
            row["error_list"].append((e["path"], e.get("message", "")))
            if not e.get("message", "").strip():
                row["unnamed"] += 1
            if kind == "INTERNAL":
                row["internal"] += 1
                row["problems"].append(f"INTERNAL {e['path']}: {e['message']}")
        row["errors"] = len(doc.get("errors", []))
        row["duplicates"] = sum(1 for n in per_path.values() if n > 1)
        for path, n in per_path.items():
            if n > 1:
                row["problems"].append(f"{n} errors for {path}")
        failed = {p for p in per_path if p in set(files)}
        row["parsed"] = len(files) - len(failed)
    else:
        row["parsed"] = 0
    row["discover_errors"] = len(discover_errors)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("libdirs", nargs="*", help="library directories (default: every pyenv version's)")
    ap.add_argument("--versions", help="comma-separated X.Y versions to sweep (default: all installed)")
    ap.add_argument("--jobs", type=int, default=None, help="passed to klaudit --jobs")
    ap.add_argument("--prefilter", action="store_true", help="sweep the default mode (prefilter on)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per library before it counts as a hang")
    ap.add_argument("--show-errors", action="store_true", help="print every error line")
    args = ap.parse_args(argv)
    if args.libdirs:
        targets = [(os.path.basename(os.path.normpath(d)), os.path.abspath(d)) for d in args.libdirs]
    else:
        targets = library_dirs(set(args.versions.split(",")) if args.versions else None)
    if not targets:
        print("no library directories found (is pyenv installed?)", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="klaudit-sweep-") as tmp:
        toml = os.path.join(tmp, "pyproject.toml")
        with open(toml, "w") as fh:
            fh.write(SWEEP_TOML)
        mode = "prefilter on (default mode)" if args.prefilter else "--no-prefilter (every file parsed)"
        print(f"klaudit stdlib sweep: {len(targets)} libraries, {mode}, jobs={args.jobs or 'default'}")
        hdr = f"{'version':<10}{'seen':>7}{'parsed':>8}{'errors':>8}{'tracebacks':>12}{'findings':>10}{'seconds':>9}  reasons"
        print(hdr)
        print("-" * len(hdr))
        for ver, d in targets:
            r = sweep_one(d, toml, args.jobs, args.prefilter, args.timeout)
            r["version"] = ver
            rows.append(r)
            reasons = ", ".join(f"{k} {n}" for k, n in sorted(r["reasons"].items()))
            print(f"{ver:<10}{r['seen']:>7}{r['parsed']:>8}{r['errors']:>8}{r['tracebacks']:>12}{r['findings']:>10}"
                  f"{r['seconds']:>9.1f}  {reasons}", flush=True)
            for prob in r["problems"]:
                print("    " + prob.replace("\n", "\n    "))
            if args.show_errors:
                for path, msg in r["error_list"]:
                    print(f"    {path}: error: {msg}")
        tot = collections.Counter()
        reasons = collections.Counter()
        for r in rows:
            for k in ("seen", "parsed", "errors", "tracebacks", "findings", "internal", "duplicates", "unnamed"):
                tot[k] += r[k]
            tot["seconds"] += r["seconds"]
            reasons.update(r["reasons"])
        print("-" * len(hdr))
        print(f"{'total':<10}{tot['seen']:>7}{tot['parsed']:>8}{tot['errors']:>8}{tot['tracebacks']:>12}"
              f"{tot['findings']:>10}{tot['seconds']:>9.1f}  "
              + ", ".join(f"{k} {n}" for k, n in sorted(reasons.items())))
        print(f"internal errors: {tot['internal']}  files with more than one error: {tot['duplicates']}  "
              f"errors without a reason: {tot['unnamed']}")
    bad = tot["tracebacks"] or tot["findings"] or tot["internal"] or tot["duplicates"] or tot["unnamed"]
    print("RESULT:", "FAIL" if bad else "OK")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
