"""Budgets: a derivation too large or too slow becomes an `unknown` derivation with a note, never a
hang; a file over the per-file wall-clock budget (`file-budget`) gets one error line and the run goes
on; a worker process that dies is reported for its file and the run goes on."""
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from rb_helpers import (FIXTURES, KL_CODE, KL_COL, KL_LINE, ROOT, check_json, errors_by_path, findings_by_path,
                        klaudit)


@pytest.fixture
def k3_core():
    """A real KL core (k3 as a loss), as the analyzer extracts it."""
    from conftest import run_paths

    report = run_paths([os.path.join(FIXTURES, "textbook", "k3_as_loss.py")])
    t = report.terms[0]
    assert t.derivation.estimator == "k3"
    return t.core


@pytest.fixture
def fresh_derivations(monkeypatch):
    from klaudit.derive import coefficient

    monkeypatch.setattr(coefficient, "_MEMO", {})
    monkeypatch.setattr(coefficient, "_DISK", None)
    return coefficient


def test_huge_expression_is_unknown_with_a_note(k3_core, fresh_derivations):
    from klaudit import ir

    huge = ir.add(*[ir.op("exp", ir.mul(ir.Const(float(i + 2)), k3_core)) for i in range(400)])
    assert ir.size(huge, 100000) > fresh_derivations.MAX_NODES
    t0 = time.perf_counter()
    d = fresh_derivations.derive(huge, 60.0)
    assert time.perf_counter() - t0 < 10
    assert (d.kind, d.estimator) == ("none", "unknown")
    assert "too large" in d.note


def test_slow_derivation_is_unknown_with_a_note(k3_core, fresh_derivations):
    from klaudit import ir

    ok = fresh_derivations.derive(k3_core, 60.0)
    assert ok.estimator == "k3" and not ok.note
    # a KL-like expression below the size limit that sympy needs far longer than the budget for
    slow = ir.add(*[ir.op("exp", ir.mul(ir.Const(float(i + 2)), k3_core)) for i in range(12)])
    assert ir.size(slow, 100000) <= fresh_derivations.MAX_NODES
    t0 = time.perf_counter()
    d = fresh_derivations.derive(slow, 0.0001)
    assert time.perf_counter() - t0 < 10
    assert (d.kind, d.estimator) == ("none", "unknown")
    assert "exceeded its 0.0001s budget" in d.note


def _budget_project(tmp_path, budget):
    (tmp_path / "pyproject.toml").write_text(f"[tool.klaudit]\nbudget = {budget}\n")
    for name in ("k3_as_loss.py", "k2_as_loss.py", "k1_in_reward.py"):
        with open(os.path.join(FIXTURES, "textbook", name)) as fh:
            (tmp_path / name).write_text(fh.read())


def test_tiny_derivation_budget_never_hangs_nor_invents_findings(tmp_path):
    _budget_project(tmp_path, 60)
    rc, normal, _ = check_json(str(tmp_path), "--no-cache")
    assert rc == 1 and normal["findings"]
    _budget_project(tmp_path, 0.0001)
    t0 = time.perf_counter()
    rc, tiny, _ = check_json(str(tmp_path), "--no-cache")
    assert time.perf_counter() - t0 < 60
    assert rc in (0, 1) and not tiny["errors"]
    # an underived term is not judged: no finding that the full derivation does not support
    assert all(f in normal["findings"] for f in tiny["findings"])
    assert len(tiny["findings"]) < len(normal["findings"])


def test_out_of_budget_term_is_listed_unknown_with_its_note(tmp_path):
    _budget_project(tmp_path, 0.0001)
    rc, out, err = klaudit("inventory", str(tmp_path), "--no-cache", "--output-format", "json")
    assert rc == 0, err
    terms = json.loads(out)["terms"]
    assert any(t["estimator"] == "unknown" and any("budget" in n for n in t["notes"]) for t in terms)


def _slow_file(n_copies: int) -> str:
    """Valid KL code that takes the analyzer seconds (distinct functions, so nothing is memoised)."""
    with open(os.path.join(FIXTURES, "textbook", "k3_as_loss.py")) as fh:
        src = fh.read()
    return "".join(src.replace("def k3_", f"def k3_{i}_") for i in range(n_copies))


def test_file_budget(tmp_path):
    """`file-budget`: the slow file gets one error naming the budget, the other file is still linted;
    the budget error is not cached, so raising the budget as the message says works at once."""
    (tmp_path / "a_slow.py").write_text(_slow_file(60))
    (tmp_path / "z_quick.py").write_text(KL_CODE)
    (tmp_path / "pyproject.toml").write_text("[tool.klaudit]\nfile-budget = 0.3\n")
    t0 = time.perf_counter()
    rc, doc, _ = check_json(str(tmp_path), "--jobs", "1")  # with the cache (in tmp_path)
    assert time.perf_counter() - t0 < 60
    assert rc == 2
    assert errors_by_path(doc) == {
        str(tmp_path / "a_slow.py"): ["analysis exceeded the per-file budget of 0.3s (raise `file-budget`)"]}
    assert (KL_LINE, KL_COL, "KL102") in findings_by_path(doc)[str(tmp_path / "z_quick.py")]
    (tmp_path / "pyproject.toml").write_text("[tool.klaudit]\nfile-budget = 600\n")
    rc, doc, _ = check_json(str(tmp_path), "--jobs", "1")
    assert rc == 1 and not doc["errors"]
    assert len(findings_by_path(doc)[str(tmp_path / "a_slow.py")]) > 60


KILLER = textwrap.dedent('''\
    """Lint a project in which analysing one file kills its worker process (as a native crash or the
    OOM killer would): only worker processes die, the parent reports."""
    import json, os, signal, sys
    from klaudit import engine
    from klaudit.config import load

    parent = os.getpid()
    real = engine.analyze_file

    def analyze_file(path, *a, **k):
        if path.endswith("killer.py") and os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, *a, **k)

    engine.analyze_file = analyze_file
    cfg = load([sys.argv[1]])
    report = engine.run([sys.argv[1]], cfg, prefilter=False, jobs=int(sys.argv[2]))
    print(json.dumps({"errors": [[e.path, e.message] for e in report.errors],
                      "findings": sorted({f.path for f in report.findings})}))
''')


def test_a_dead_worker_is_reported_and_the_run_goes_on(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    names = [f"m{i}.py" for i in range(9)] + ["killer.py"]  # enough files for the process pool
    for n in names:
        (proj / n).write_text(KL_CODE)
    script = tmp_path / "killer_run.py"
    script.write_text(KILLER)
    p = subprocess.run([sys.executable, str(script), str(proj), "2"], capture_output=True, text=True, timeout=300,
                       cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    out = json.loads(p.stdout)
    assert out["errors"] == [[str(proj / "killer.py"),
                              "the worker process analysing this file died (a crash or out of memory)"]]
    assert out["findings"] == sorted(str(proj / n) for n in names if n != "killer.py")
