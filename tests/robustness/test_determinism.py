"""Determinism: the same report byte for byte across runs, worker counts, hash seeds and a cold or warm
cache; findings in (path, line, column, code) order."""
import json
import os
import shutil

import pytest

from rb_helpers import FIXTURES, KL_CODE, assert_no_traceback, check_json, klaudit, sort_key


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    proj = tmp_path_factory.mktemp("determinism") / "proj"
    shutil.copytree(os.path.join(FIXTURES, "textbook"), proj / "textbook")
    (proj / "rules").mkdir()
    for name in sorted(os.listdir(os.path.join(FIXTURES, "rules")))[:5]:
        shutil.copy(os.path.join(FIXTURES, "rules", name), proj / "rules" / name)
    (proj / "broken.py").write_text("def kl_loss(logp, ref_logp:\n    return logp - ref_logp\n")
    (proj / "binary.py").write_bytes(b"\x00\x01kl")
    (proj / "zz_last.py").write_text(KL_CODE)
    (proj / "pyproject.toml").write_text("[tool.klaudit]\npreview = true\n")  # the root: the cache goes here
    return proj


def _run(proj, *args, **env):
    rc, out, err = klaudit("check", ".", "--output-format", "json", *args, cwd=str(proj), **env)
    assert_no_traceback(rc, out, err)
    assert rc == 2  # findings and the two unreadable files
    return out


def test_same_bytes_across_runs_jobs_seeds_and_cache(project):
    cache = project / ".klaudit_cache"
    shutil.rmtree(cache, ignore_errors=True)
    ref = _run(project, "--no-cache", "--jobs", "1", PYTHONHASHSEED="0")
    doc = json.loads(ref)
    assert len({f["path"] for f in doc["findings"]}) > 8 and len(doc["errors"]) == 2
    runs = {
        "again": _run(project, "--no-cache", "--jobs", "1", PYTHONHASHSEED="0"),
        "other hash seed": _run(project, "--no-cache", "--jobs", "1", PYTHONHASHSEED="12345"),
        "two workers": _run(project, "--no-cache", "--jobs", "2", PYTHONHASHSEED="1"),
    }
    assert not cache.exists()
    runs["cold cache"] = _run(project, "--jobs", "2")
    assert cache.is_dir() and any(files for _, _, files in os.walk(cache))
    runs["warm cache"] = _run(project, "--jobs", "2")
    runs["warm cache, one process"] = _run(project, "--jobs", "1")
    for what, out in runs.items():
        assert out == ref, what


def test_text_report_same_cold_and_warm(project):
    cache = project / ".klaudit_cache"
    shutil.rmtree(cache, ignore_errors=True)
    outs = [klaudit("check", ".", *a, cwd=str(project))
            for a in (["--no-cache"], [], [])]  # no cache, cold, warm
    assert cache.is_dir()
    for rc, out, err in outs:
        assert_no_traceback(rc, out, err)
    assert outs[0] == outs[1] == outs[2]


def test_findings_and_errors_in_order(project):
    rc, doc, _ = check_json(".", "--no-cache", cwd=str(project))
    findings = doc["findings"]
    keys = [sort_key(f) for f in findings]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    # the order is exercised: several files, several findings in a file, two codes at one place
    assert len({k[0] for k in keys}) > 1
    assert any(a[:3] == b[:3] and a[3] != b[3] for a, b in zip(keys, keys[1:]))
    assert [e["path"] for e in doc["errors"]] == sorted(e["path"] for e in doc["errors"])
    # the text report lists the findings in the same order
    rc, out, err = klaudit("check", ".", "--no-cache", "--output-format", "concise", cwd=str(project))
    lines = [ln for ln in out.splitlines() if ": error: " not in ln]
    assert [ln.split(": ", 1)[0] + " " + ln.split(": ", 1)[1].split(" ", 1)[0] for ln in lines] == \
        [f"{f['path']}:{f['line']}:{f['column']} {f['code']}" for f in findings]
