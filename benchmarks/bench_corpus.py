#!/usr/bin/env python3
"""Measure klaudit on a corpus directory and print the figures issue 8 asks for.

usage: python benchmarks/bench_corpus.py CORPUS_DIR [--repeat 3] [--scaling] [--jobs N]

Prints, in one run (medians of --repeat):
  * klaudit cold (--no-cache) and warm (cache primed, nothing changed) over the whole corpus, and a warm
    run after one file changed;
  * floors: libcst.parse_module on every .py file, ast.parse on every file, and `ruff check --select ALL
    --no-cache` when ruff is installed; the ratios klaudit/ruff;
  * one file, cold process, as pre-commit runs it: the largest file without a KL term and the largest
    with one, against `python -c "import libcst; libcst.parse_module(...)"` on the same file;
  * peak memory (max RSS of the klaudit process);
  * with --scaling: the cold time on 1x, 2x and 4x copies of the corpus (linear growth check).
No figure is asserted: this script reports.
"""
from __future__ import annotations

import argparse
import ast
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PY = sys.executable


def py_files(root):
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if not x.startswith(".") and x not in ("node_modules", "__pycache__")]
        out.extend(os.path.join(d, f) for f in files if f.endswith(".py"))
    return sorted(out)


def timed(cmd, cwd=None, env=None):
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    return time.perf_counter() - t, p


def median(fn, n):
    return statistics.median(fn() for _ in range(n))


def klaudit(args, cwd):
    return [PY, "-m", "klaudit", *args]


def peak_rss_of(cmd, cwd):
    """Max RSS (MiB) of a child process, measured in a fresh grandchild so earlier children do not count."""
    code = ("import resource,subprocess,sys;subprocess.run(sys.argv[1:],capture_output=True);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    p = subprocess.run([PY, "-c", code, *cmd], cwd=cwd, capture_output=True, text=True)
    try:
        return int(p.stdout.strip().splitlines()[-1]) / 1024.0
    except (ValueError, IndexError):
        return float("nan")


def floor_libcst(files):
    import libcst

    t = time.perf_counter()
    for f in files:
        try:
            libcst.parse_module(open(f, encoding="utf-8", errors="replace").read())
        except Exception:
            pass
    return time.perf_counter() - t


def floor_ast(files):
    t = time.perf_counter()
    for f in files:
        try:
            ast.parse(open(f, "rb").read())
        except Exception:
            pass
    return time.perf_counter() - t


def one_file(path, repeat):
    kl = median(lambda: timed(klaudit(["check", path, "--no-cache", "--exit-zero"], None))[0], repeat)
    code = f"import libcst; libcst.parse_module(open({path!r}).read())"
    lc = median(lambda: timed([PY, "-c", code])[0], repeat)
    return kl, lc


def has_term(path):
    p = subprocess.run(klaudit(["inventory", path, "--no-cache", "--output-format", "json"], None),
                       capture_output=True, text=True)
    import json

    try:
        return bool(json.loads(p.stdout)["terms"])
    except Exception:
        return False


def scaled_copy(src, k, dst):
    for i in range(k):
        shutil.copytree(src, os.path.join(dst, f"copy{i}"), symlinks=True,
                        ignore=shutil.ignore_patterns(".klaudit_cache", ".git"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scaling", action="store_true")
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--one-file", type=int, default=1, help="measure the one-file figures (0: skip)")
    a = ap.parse_args()
    corpus = os.path.abspath(a.corpus)
    files = py_files(corpus)
    lines = sum(open(f, "rb").read().count(b"\n") for f in files)
    jobs = ["--jobs", str(a.jobs)] if a.jobs else []
    print(f"corpus: {corpus}: {len(files)} .py files, {lines} lines; repeat {a.repeat}; cores {os.cpu_count()}")

    work = tempfile.mkdtemp(prefix="klaudit-bench-")
    try:
        tree = os.path.join(work, "tree")
        shutil.copytree(corpus, tree, symlinks=True, ignore=shutil.ignore_patterns(".klaudit_cache", ".git"))
        args = ["check", ".", "--exit-zero", "--output-format", "concise", *jobs]
        cold = median(lambda: timed(klaudit(args + ["--no-cache"], tree), tree)[0], a.repeat)
        timed(klaudit(args, tree), tree)  # prime the cache
        warm = median(lambda: timed(klaudit(args, tree), tree)[0], a.repeat)
        # one changed file: append a comment to the largest candidate file, re-lint with the cache
        target = max(files, key=os.path.getsize)
        tfile = os.path.join(tree, os.path.relpath(target, corpus))

        def changed():
            with open(tfile, "a") as fh:
                fh.write(f"\n# bench {time.time()}\n")
            return timed(klaudit(args, tree), tree)[0]

        one_changed = median(changed, a.repeat)
        peak = peak_rss_of(klaudit(args + ["--no-cache"], tree), tree)
        f_libcst = median(lambda: floor_libcst(files), 1)
        f_ast = median(lambda: floor_ast(files), a.repeat)
        ruff = shutil.which("ruff")
        r = None
        if ruff:
            r = median(lambda: timed([ruff, "check", "--select", "ALL", "--no-cache", "--exit-zero", "-q", "."],
                                     tree)[0], a.repeat)
        print(f"klaudit cold (no cache)        {cold:8.2f} s")
        print(f"klaudit warm (nothing changed) {warm:8.2f} s")
        print(f"klaudit warm, one file changed {one_changed:8.2f} s")
        print(f"libcst.parse_module, all files {f_libcst:8.2f} s   (in-process floor, no startup)")
        print(f"ast.parse, all files           {f_ast:8.2f} s")
        if r is not None:
            print(f"ruff check --select ALL        {r:8.2f} s")
            print(f"ratio cold / ruff              {cold / r:8.2f}   (target <= 2)")
            print(f"ratio warm / ruff              {warm / r:8.2f}   (target <= 1)")
        else:
            print("ruff                           not installed (pip install ruff) - ratios not computed")
        print(f"peak memory (max RSS)          {peak:8.1f} MiB (target < 1024)")
        if a.one_file:
            cand = sorted(files, key=os.path.getsize, reverse=True)
            with_t = next((f for f in cand[:40] if has_term(f)), None)
            without = next((f for f in cand[:40] if not has_term(f)), None)
            for label, f in (("without a KL term", without), ("with a KL term", with_t)):
                if f is None:
                    continue
                kl, lc = one_file(f, a.repeat)
                n = open(f, "rb").read().count(b"\n")
                print(f"one file {label:18s} ({os.path.relpath(f, corpus)}, {n} lines): klaudit {kl:.2f} s, "
                      f"libcst floor {lc:.2f} s, ratio {kl / lc:.2f}")
        if a.scaling:
            for k in (1, 2, 4):
                d = os.path.join(work, f"x{k}")
                os.makedirs(d)
                scaled_copy(corpus, k, d)
                t = timed(klaudit(args + ["--no-cache"], d), d)[0]
                print(f"scaling {k}x: cold {t:.2f} s ({t / k:.2f} s per copy)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
