"""Property-based: valid training code, mutated (truncated, bytes inserted, lines shuffled, dropped or
repeated), never gives a traceback; the report is well formed (JSON that parses, exit code 0/1/2 that
agrees with it, at most one one-line error per file); another file's findings are untouched; one
process and several give the same bytes.  In-process through the click command (as
tests/probe/test_probe_cli.py does); the real command runs in the other robustness tests."""
import glob
import json
import os
import tempfile

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rb_helpers import EXAMPLE, FIXTURES, KL_CODE

from klaudit.cli import main

SOURCES = [open(p, "rb").read() for p in [EXAMPLE] + sorted(glob.glob(os.path.join(FIXTURES, "textbook", "*.py")))]
SPECIAL = [b"\x00", b"\r", b"\r\n", b"\x0c", b"\t", b"\xef\xbb\xbf", b"\xff\xfe", b"\xe9", b"\x1a",
           "\u2028".encode("utf-8"), b"(" * 300, b"[" * 2000, b"-" * 1500, b"not " * 1200,
           b"# -*- coding: latin-1 -*-\n", b"# coding: klingon\n", b"\\", b'"""', b"'", b"\n    ", b"lambda: ",
           b"kl = ", b"def f(", b"\n)\n"]

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def mutated(draw):
    src = draw(st.sampled_from(SOURCES))
    for op in draw(st.lists(st.sampled_from(["truncate", "insert", "shuffle", "drop", "repeat"]), min_size=1,
                            max_size=3)):
        if op == "truncate":
            src = src[:draw(st.integers(0, len(src)))]
        elif op == "insert":
            at = draw(st.integers(0, len(src)))
            blob = draw(st.one_of(st.binary(min_size=1, max_size=12), st.sampled_from(SPECIAL)))
            src = src[:at] + blob + src[at:]
        else:
            lines = src.splitlines(keepends=True)
            if not lines:
                continue
            i = draw(st.integers(0, len(lines) - 1))
            if op == "shuffle":  # a block of up to 12 lines, in another order
                j = min(len(lines), i + 12)
                lines = lines[:i] + [lines[i + k] for k in draw(st.permutations(range(j - i)))] + lines[j:]
            else:
                j = draw(st.integers(i, min(len(lines), i + 5)))
                lines = lines[:i] + lines[j:] if op == "drop" else lines[:j] + lines[i:j] * 3 + lines[j:]
            src = b"".join(lines)
    return src


def lint(path, *extra):
    """``klaudit check PATH --output-format json`` in this process: (exit code, stdout)."""
    r = CliRunner().invoke(main, ["check", str(path), "--output-format", "json", "--no-cache", "--no-prefilter",
                                  *extra])
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    assert r.exit_code in (0, 1, 2), r.output
    return r.exit_code, r.stdout


def well_formed(rc, out, paths):
    doc = json.loads(out)
    assert set(doc) >= {"version", "findings", "errors"}
    seen = set()
    for e in doc["errors"]:
        assert e["path"] in paths and e["path"] not in seen, e  # at most one error per file
        seen.add(e["path"])
        assert e["message"].strip() and "\n" not in e["message"], e
        assert not e["message"].startswith("internal error"), e
    for f in doc["findings"]:
        assert f["path"] in paths and f["line"] >= 1 and f["column"] >= 1 and f["code"].startswith("KL"), f
    assert rc == (2 if doc["errors"] else 1 if doc["findings"] else 0)
    return doc


@pytest.fixture(scope="module")
def reference_findings():
    with tempfile.TemporaryDirectory() as d:
        ref = os.path.join(d, "reference.py")
        with open(ref, "w") as fh:
            fh.write(KL_CODE)
        rc, out = lint(d, "--jobs", "1")
        doc = json.loads(out)
        assert rc == 1 and doc["findings"]
        return [{**f, "path": os.path.basename(f["path"])} for f in doc["findings"]]


@SETTINGS
@given(src=mutated())
def test_mutated_code_gives_a_well_formed_report(reference_findings, src):
    with tempfile.TemporaryDirectory() as d:
        mpath, ref = os.path.join(d, "mutated.py"), os.path.join(d, "reference.py")
        with open(mpath, "wb") as fh:
            fh.write(src)
        with open(ref, "w") as fh:
            fh.write(KL_CODE)
        rc, out = lint(d, "--jobs", "1")
        doc = well_formed(rc, out, {mpath, ref})
        # the rest of the run goes on: the other file's findings are exactly what they are alone
        assert [{**f, "path": os.path.basename(f["path"])} for f in doc["findings"] if f["path"] == ref] \
            == reference_findings


@settings(SETTINGS, max_examples=10)
@given(srcs=st.lists(mutated(), min_size=8, max_size=10))
def test_one_process_and_several_agree(srcs):
    with tempfile.TemporaryDirectory() as d:
        paths = set()
        for i, src in enumerate(srcs):  # at least 8 files: --jobs 2 uses the process pool
            p = os.path.join(d, f"m{i}.py")
            with open(p, "wb") as fh:
                fh.write(src)
            paths.add(p)
        rc1, out1 = lint(d, "--jobs", "1")
        rc2, out2 = lint(d, "--jobs", "2")
        well_formed(rc1, out1, paths)
        assert (rc1, out1) == (rc2, out2)
